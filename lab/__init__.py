"""The lab: start a local system, drive load against it and measure it."""

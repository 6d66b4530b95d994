"""Watching a running system: the collector (the master's Watch stream and the MQTT topics, as frames) and
the probes of the master's CPU, memory and Watch log."""

from lab.observe.collect import Collector

__all__ = ["Collector"]

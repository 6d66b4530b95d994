"""The `lab` command's subcommands, one module each with `register(subparsers)`; `lab.cli` wires them."""

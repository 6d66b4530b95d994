"""The lab: start a local system, drive load against it and measure it.

Subpackages, each with its public API in its ``__init__``; a layer imports only from layers below it, and
siblings on one line (``|``) not from each other:

    cli                              the `lab` command
    commands                         up, load, report, bench, swarm: one module per subcommand
    bench | swarm | chat             benchmarks; the Docker Swarm stack; the notebooks' chat panel
    experiment | charts              runs of load with faults, collected; charts of runs
    observe | loadgen                collectors and probes of a running system; load users and arrivals
    system | runs                    local clusters and attaching to one; runs saved, loaded, described
    analysis                         KPIs, queueing predictions, percentiles (no I/O)
    paths | _lazy                    the repository's folders; lazy package attributes

The heavy dependencies (pandas, matplotlib, Socket.IO, gRPC, MQTT) are imported by the modules that use
them and by functions that run commands, never to build the `lab` parser.
"""

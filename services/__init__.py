"""The running parts of Swarm AI Lab: protocol, master, worker, web client and broker config."""

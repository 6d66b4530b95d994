"""The master: queues users' questions, hands them to idle workers, delivers their answers."""

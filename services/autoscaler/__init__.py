"""The autoscaler: sizes the worker fleet from what the master sees (queueing model, policy, actuators)."""

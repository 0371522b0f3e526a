"""Trace-driven autoscaling simulator: replays request traces against simulated replicas and a replica policy."""

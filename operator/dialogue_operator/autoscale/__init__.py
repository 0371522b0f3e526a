"""Autoscaling: a pure replica policy and the metrics collector that feeds it."""

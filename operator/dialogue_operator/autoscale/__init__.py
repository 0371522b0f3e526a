"""Autoscaling: a pure replica policy and the metrics collector that feeds it."""

from dialogue_operator.autoscale.config import AutoscalingSpecLike, PolicyConfig
from dialogue_operator.autoscale.observation import Observation, ReplicaMetrics
from dialogue_operator.autoscale.policy import Decision, Reason, decide
from dialogue_operator.autoscale.state import PolicyState

__all__ = [
    "AutoscalingSpecLike",
    "Decision",
    "Observation",
    "PolicyConfig",
    "PolicyState",
    "Reason",
    "ReplicaMetrics",
    "decide",
]

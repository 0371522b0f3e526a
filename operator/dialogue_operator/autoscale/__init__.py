"""Autoscaling: a pure replica policy and the metrics collector that feeds it."""

from dialogue_operator.autoscale.config import AutoscalingSpecLike, PolicyConfig
from dialogue_operator.autoscale.observation import Observation, ReplicaMetrics
from dialogue_operator.autoscale.policy import Decision, Reason, decide
from dialogue_operator.autoscale.state import PolicyState
from dialogue_operator.autoscale.status import DESIRED_REPLICAS, autoscaling_status, state_from_status

__all__ = [
    "DESIRED_REPLICAS",
    "AutoscalingSpecLike",
    "Decision",
    "Observation",
    "PolicyConfig",
    "PolicyState",
    "Reason",
    "ReplicaMetrics",
    "autoscaling_status",
    "decide",
    "state_from_status",
]

"""Autoscaling: a pure replica policy and the metrics collector that feeds it."""

from dialogue_operator.autoscale.config import AutoscalingSpecLike, PolicyConfig
from dialogue_operator.autoscale.observation import Observation, ReplicaMetrics
from dialogue_operator.autoscale.policy import Decision, Reason, decide
from dialogue_operator.autoscale.state import PolicyState
from dialogue_operator.autoscale.status import (
    ANNOTATION_SCALE_FROM_ZERO,
    DESIRED_REPLICAS,
    autoscaling_status,
    scale_from_zero_requested,
    state_from_status,
)

__all__ = [
    "ANNOTATION_SCALE_FROM_ZERO",
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
    "scale_from_zero_requested",
    "state_from_status",
]

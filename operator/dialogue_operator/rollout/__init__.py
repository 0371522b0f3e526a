"""Pure variant and canary state machine for compressed-variant rollouts (no clock, no I/O, no client)."""

from dialogue_operator.rollout.analysis import analyze, histogram_quantile, window
from dialogue_operator.rollout.machine import StepResult, step
from dialogue_operator.rollout.model import (
    TERMINAL_PHASES,
    Action,
    ActionKind,
    Analysis,
    AnalysisSpec,
    EvaluationObservation,
    Event,
    JobObservation,
    JobState,
    Observation,
    Phase,
    RolloutSpec,
    RolloutState,
    VariantMetrics,
    new_state,
)

__all__ = [
    "TERMINAL_PHASES",
    "Action",
    "ActionKind",
    "Analysis",
    "AnalysisSpec",
    "EvaluationObservation",
    "Event",
    "JobObservation",
    "JobState",
    "Observation",
    "Phase",
    "RolloutSpec",
    "RolloutState",
    "StepResult",
    "VariantMetrics",
    "analyze",
    "histogram_quantile",
    "new_state",
    "step",
    "window",
]

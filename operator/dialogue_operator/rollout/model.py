"""Data of the rollout state machine (pure): its spec, what the shell observed, its state, actions and events.

Everything here is an immutable pydantic model that serializes to camelCase JSON, because the state lives in
`status.rollout` of the DialogueModel and must survive operator restarts.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready camelCase dict (what goes into status)."""
        return self.model_dump(mode="json", by_alias=True)


class Phase(StrEnum):
    PENDING = "Pending"
    COMPRESSING = "Compressing"
    EVALUATING = "Evaluating"
    CANARY = "Canary"
    PAUSED = "Paused"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABORTED = "Aborted"
    FAILED = "Failed"


TERMINAL_PHASES = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED})


class AnalysisSpec(_Data):
    """Thresholds for the canary against the stable variant, over the samples of the current step."""

    max_ttft_p95_ratio: float = Field(default=1.5, gt=0, description="Canary TTFT p95 / stable TTFT p95, at most.")
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Canary errors / canary requests, at most.")
    min_samples: int = Field(default=20, ge=1, description="Canary requests needed before any verdict.")


class RolloutSpec(_Data):
    """What the user asked for (from `spec.rollout`) plus what the shell knows about the target variant."""

    target_variant: str = Field(min_length=1)
    # Changes whenever the target variant's definition changes (the shell hashes it): a new revision restarts
    # a finished rollout; the same revision never reruns one that was rolled back.
    revision: str = ""
    steps: tuple[int, ...] = (5, 25, 50, 100)
    step_duration_s: float | None = Field(default=None, gt=0)
    step_requests: int | None = Field(default=None, ge=1)
    analysis: AnalysisSpec = AnalysisSpec()
    paused: bool = False
    abort: bool = False
    needs_compression: bool = Field(default=False, description="The variant is produced by a compression Job.")
    quality_gate: bool = Field(default=False, description="An evaluation Job must find the variant eligible.")
    ready_timeout_s: float | None = Field(default=None, gt=0, description="Roll back if the canary is not Ready.")

    @field_validator("steps")
    @classmethod
    def _steps_ascending(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps:
            raise ValueError("steps: at least one traffic step is needed")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"steps: each weight must be in 1..100 percent, got {list(steps)}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps: weights must increase strictly, got {list(steps)}")
        return steps


class JobState(StrEnum):
    ABSENT = "Absent"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class JobObservation(_Data):
    state: JobState = JobState.ABSENT
    # The Job's own CamelCase reason for a failure (`StorageFull`, `CalibrationSetMissing`, ...), when it wrote one.
    reason: str | None = None
    message: str = ""
    # While it runs: the step its log says it is in (`quantize (W8A8, ...)`), '' when unknown.
    step: str = ""


class EvaluationObservation(_Data):
    state: JobState = JobState.ABSENT
    step: str = ""  # as in JobObservation
    reason: str | None = None  # as in JobObservation: `GoldenSetMissing`, `ModelNotFound`, ...
    eligible: bool | None = None
    recovery: float | None = None
    agreement: float | None = None
    threshold: float | None = None
    message: str = ""


class VariantMetrics(_Data):
    """Cumulative gateway counters for one variant (as scraped; the machine takes differences per step).

    `ttft_bucket_counts` are cumulative histogram counts for each bound in `ttft_bucket_bounds_s`, plus a last
    entry for +Inf, so `len(counts) == len(bounds) + 1`.
    """

    requests: int = Field(default=0, ge=0)
    errors: int = Field(default=0, ge=0)
    ttft_bucket_bounds_s: tuple[float, ...] = ()
    ttft_bucket_counts: tuple[int, ...] = (0,)

    @field_validator("ttft_bucket_counts")
    @classmethod
    def _non_empty(cls, counts: tuple[int, ...]) -> tuple[int, ...]:
        if not counts:
            raise ValueError("ttftBucketCounts needs at least the +Inf count")
        return counts


class Observation(_Data):
    """What the shell saw this reconcile; any part it could not see stays at its default (unknown/absent)."""

    compression: JobObservation = JobObservation()
    evaluation: EvaluationObservation = EvaluationObservation()
    canary_ready: bool = False
    canary_crash_looping: bool = False
    canary_message: str = ""
    metrics: dict[str, VariantMetrics] | None = Field(default=None, description="Per variant; None if unknown.")


class Analysis(_Data):
    """One analysis of the canary against the stable variant over the current step's window."""

    step: int
    verdict: Literal["Pass", "Fail", "Waiting"]
    canary_requests: int
    canary_errors: int
    canary_error_rate: float | None = None
    canary_ttft_p95_s: float | None = None
    stable_ttft_p95_s: float | None = None
    ttft_p95_ratio: float | None = None
    reasons: tuple[str, ...] = ()


class RolloutState(_Data):
    """The machine's whole memory; stored in `status.rollout`."""

    phase: Phase = Phase.PENDING
    stable_variant: str
    previous_stable_variant: str | None = None
    target_variant: str | None = None
    revision: str = ""
    step_index: int = 0
    weights: dict[str, int] = Field(default_factory=dict)
    phase_since_s: float | None = None
    step_started_s: float | None = None
    step_elapsed_before_pause_s: float = 0.0
    baseline: dict[str, VariantMetrics] | None = None
    stable_ttft_p95_reference_s: float | None = None
    last_analysis: Analysis | None = None
    reason: str = ""
    message: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> RolloutState:
        return cls.model_validate(data)


def new_state(stable_variant: str) -> RolloutState:
    """The state before any rollout: all traffic on the stable variant."""
    return RolloutState(stable_variant=stable_variant, weights={stable_variant: 100})


class ActionKind(StrEnum):
    ENSURE_COMPRESSION_JOB = "EnsureCompressionJob"
    ENSURE_EVALUATION_JOB = "EnsureEvaluationJob"
    ENSURE_CANARY = "EnsureCanary"
    REMOVE_CANARY = "RemoveCanary"
    REMOVE_VARIANT = "RemoveVariant"


class Action(_Data):
    """A desired-state instruction for the shell, idempotent: emitted on every step while it holds."""

    kind: ActionKind
    variant: str


class Event(_Data):
    """A Kubernetes Event to record; emitted once, on the transition it describes."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str

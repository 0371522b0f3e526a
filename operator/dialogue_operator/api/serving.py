"""Scaling, dialogue, variant, rollout, security and cache parts of a DialogueModel spec (pure pydantic)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from dialogue_operator.api.common import DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, ApiModel, cel
from dialogue_operator.api.cron import Cron, time_zone
from dialogue_operator.api.model import (
    OPERATOR_OWNED_FLAGS,
    OWNED_FLAGS_RE,
    PATH_SEGMENT,
    SOURCE_PATTERN,
    EnvVar,
    SimProfileSpec,
    owned_flag_in,
)

BASE_VARIANT = "base"
ONLINE_QUANTIZATIONS = ("fp8_per_tensor", "fp8", "bitsandbytes")
COMPRESSION_SCHEMES = ("FP8_DYNAMIC", "W8A8", "W4A16", "W4A16_ASYM")
BUILTIN_GOLDEN_SET = "builtin:default"
GOLDEN_SET_PATTERN = rf"^(builtin:default|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/{PATH_SEGMENT})+)$"
CALIBRATION_PATTERN = rf"^(builtin:[A-Za-z0-9][A-Za-z0-9._-]*|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/{PATH_SEGMENT})+)$"


# Five space-separated cron fields of the characters cron uses (the operator checks ranges and names too).
CRON_PATTERN = r"^\s*[0-9A-Za-z*,/-]+(\s+[0-9A-Za-z*,/-]+){4}\s*$"


class ScheduledBounds(ApiModel):
    """Replica bounds for a recurring window, open from each `start` until the next `end` (cron, in `timeZone`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
                    "a schedule's minReplicas must be less than or equal to its maxReplicas",
                    ".minReplicas",
                ),
            ]
        }
    )

    name: str = Field(max_length=63, pattern=DNS_LABEL_PATTERN, description="Name shown in status and Events.")
    start: str = Field(
        max_length=128,
        pattern=CRON_PATTERN,
        description="Cron expression (minute hour day-of-month month day-of-week) at which the window opens.",
    )
    end: str = Field(max_length=128, pattern=CRON_PATTERN, description="Cron expression at which it closes.")
    time_zone: str = Field(default="UTC", max_length=64, description="IANA time zone of start and end.")
    min_replicas: int = Field(ge=0, le=1000, description="Fewest replicas while the window is open.")
    max_replicas: int | None = Field(
        default=None, ge=1, le=1000, description="Most replicas while the window is open (default: the spec's)."
    )

    @field_validator("start", "end")
    @classmethod
    def _cron(cls, value: str) -> str:
        Cron.parse(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        time_zone(value)
        return value

    @model_validator(mode="after")
    def _window_bounds(self) -> ScheduledBounds:
        if self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError("a schedule's minReplicas must be less than or equal to its maxReplicas")
        return self


class AutoscalingSpec(ApiModel):
    """Replica bounds and targets for the operator's autoscaler (mutually exclusive with spec.replicas)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.minReplicas <= self.maxReplicas",
                    "spec.autoscaling.minReplicas must be less than or equal to maxReplicas",
                    ".minReplicas",
                ),
                cel(
                    "!has(self.schedules) || self.schedules.all(a, self.schedules.exists_one(b, b.name == a.name))",
                    "spec.autoscaling.schedules names must be unique",
                    ".schedules",
                ),
            ]
        }
    )

    enabled: bool = Field(default=True, description="Whether the autoscaler manages the replica count.")
    min_replicas: int = Field(default=1, ge=0, le=1000, description="Fewest replicas; 0 allows scale to zero.")
    max_replicas: int = Field(default=1, ge=1, le=1000, description="Most replicas.")
    target_in_flight_per_replica: int = Field(
        default=8, ge=1, le=100_000, description="Concurrent requests per replica the autoscaler aims for."
    )
    scale_to_zero_after_seconds: int = Field(
        default=600, ge=0, le=86_400, description="Idle time before scaling to zero (when minReplicas is 0)."
    )
    ttft_p95_target_seconds: float | None = Field(
        default=None, gt=0, description="Scale up when the 95th percentile time to first token exceeds this."
    )
    schedules: list[ScheduledBounds] = Field(
        default_factory=list,
        max_length=16,
        description="Recurring windows with their own replica bounds; while any is open, they replace "
        "minReplicas and maxReplicas (the largest minimum and maximum of the open ones).",
    )

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("spec.autoscaling.minReplicas must be less than or equal to maxReplicas")
        names = [s.name for s in self.schedules]
        if len(names) != len(set(names)):
            raise ValueError(f"spec.autoscaling.schedules names must be unique, got {names}")
        return self

    def replica_range(self) -> tuple[int, int]:
        """The fewest and most replicas any window (or none) allows: what a stale decision is clamped to."""
        lows = [self.min_replicas, *(s.min_replicas for s in self.schedules)]
        highs = [self.max_replicas, *(s.max_replicas or self.max_replicas for s in self.schedules)]
        return min(lows), max(highs)


class DialogueSpec(ApiModel):
    """Conversation settings applied by the gateway and the engine's chat template."""

    system_prompt: str | None = Field(
        default=None, max_length=32_768, description="System prompt prepended to every conversation."
    )
    chat_template: str | None = Field(
        default=None, max_length=65_536, description="Jinja chat template overriding the model's own."
    )
    history_token_budget: int | None = Field(
        default=None, ge=0, le=10_000_000, description="Most tokens of conversation history kept per session."
    )


class CalibrationSpec(ApiModel):
    """Calibration data for a compression recipe."""

    dataset: str = Field(
        default="builtin:chat",
        max_length=512,
        pattern=CALIBRATION_PATTERN,
        description="Calibration dataset: builtin:<name> or pvc://claim/path to a JSONL file of chat samples.",
    )
    num_samples: int = Field(default=256, ge=1, le=100_000, description="Calibration samples used.")
    max_sequence_length: int = Field(default=2048, ge=16, le=1_000_000, description="Tokens per calibration sample.")


class CompressionSpec(ApiModel):
    """A compression recipe the operator runs (llm-compressor) to produce the variant's weights."""

    scheme: Literal["FP8_DYNAMIC", "W8A8", "W4A16", "W4A16_ASYM"] = Field(
        description="Quantization scheme: FP8_DYNAMIC, W8A8 (int8 weights and activations), W4A16 (int4 weights, "
        "symmetric groups) or W4A16_ASYM (int4 weights with a zero point per group: better recovery on small models)."
    )
    group_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Weight group size (W4A16, W4A16_ASYM; default 128); must divide the hidden size.",
    )
    calibration: CalibrationSpec | None = Field(
        default=None, description="Calibration data (W8A8 and W4A16* use GPTQ; FP8_DYNAMIC needs none)."
    )


class QualityGateSpec(ApiModel):
    """The quality gate a compressed or pre-quantized (pvc://) variant must pass before it gets any traffic.

    The evaluation Job runs the golden dialogues through the base and the variant: recovery is the variant's mean
    log-probability of the reference replies relative to the base's, agreement the share of greedy tokens equal
    to the base's. The variant is eligible when recovery >= minRecovery (and agreement >= minAgreement, if set).
    """

    min_recovery: float = Field(
        default=0.9, gt=0, le=1, description="Least recovery (0-1] of the base's reference log-probability."
    )
    min_agreement: float | None = Field(
        default=None, ge=0, le=1, description="Least greedy top-1 token agreement with the base (0-1), if set."
    )
    golden_set: str = Field(
        default=BUILTIN_GOLDEN_SET,
        pattern=GOLDEN_SET_PATTERN,
        max_length=512,
        description="Golden dialogues: builtin:default (shipped, 32 dialogues) or pvc://claim/path to a JSON-lines "
        'file of {"messages": [...], "reference": "..."} rows.',
    )
    max_dialogues: int | None = Field(
        default=None, ge=1, le=100_000, description="Score only the first N golden dialogues (all when unset)."
    )


class VariantEngineSpec(ApiModel):
    """What one variant's pods run differently from spec.engine; everything else (kind, image) is the base's.

    `args` are appended after spec.engine.args (the engine's parser keeps the last value of a repeated flag, so
    a variant may override a base flag); `env` entries replace the base's of the same name; `sim` fields replace
    the base's spec.engine.sim fields one by one (engine kind sim only).
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"!has(self.args) || self.args.all(a, !a.matches('{OWNED_FLAGS_RE}'))",
                    "spec.variants[].engine.args must not set flags the operator owns: "
                    + ", ".join(OPERATOR_OWNED_FLAGS),
                    ".args",
                ),
            ]
        }
    )

    args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Engine arguments appended after spec.engine.args for this variant's pods.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Environment variables of this variant's engine container (replace the base's by name).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    sim: SimProfileSpec | None = Field(
        default=None,
        description="Simulated engine parameters replacing spec.engine.sim's field by field (engine kind sim only).",
    )

    @model_validator(mode="after")
    def _owned_flags(self) -> VariantEngineSpec:
        flag = owned_flag_in(self.args)
        if flag is not None:
            raise ValueError(f"spec.variants[].engine.args: {flag} is set by the operator")
        return self


class VariantSpec(ApiModel):
    """An alternative build of the model (pre-quantized, quantized online, or compressed by the operator)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "[has(self.source), has(self.quantization), has(self.compression)].filter(x, x).size() == 1",
                    "a variant sets exactly one of source, quantization or compression",
                ),
                cel("self.name != 'base'", "variant name 'base' is reserved for the base model", ".name"),
                cel(
                    "!has(self.qualityGate) || has(self.compression) || "
                    "(has(self.source) && self.source.startsWith('pvc://'))",
                    "spec.variants[].qualityGate needs a checkpoint the evaluation Job can read: a compression "
                    "variant or a pvc:// source (online quantization has none)",
                    ".qualityGate",
                ),
            ]
        }
    )

    name: str = Field(
        description="Variant name (a DNS label, at most 20 characters); 'base' is reserved.",
        pattern=DNS_LABEL_PATTERN,
        min_length=1,
        max_length=20,
    )
    source: str | None = Field(
        default=None, pattern=SOURCE_PATTERN, max_length=512, description="Pre-quantized weights (same URI forms)."
    )
    quantization: Literal["fp8_per_tensor", "fp8", "bitsandbytes"] | None = Field(
        default=None, description="Online quantization applied by the engine when loading the base weights."
    )
    compression: CompressionSpec | None = Field(
        default=None, description="Compression recipe the operator runs to produce the weights."
    )
    quality_gate: QualityGateSpec | None = Field(
        default=None,
        description="Quality gate before any traffic. Compression and pvc:// source variants are always gated "
        "(defaults when unset); other sources and online quantization are not (no checkpoint to score).",
    )
    engine: VariantEngineSpec | None = Field(
        default=None, description="Engine settings of this variant's pods that differ from spec.engine."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> VariantSpec:
        chosen = [x for x in (self.source, self.quantization, self.compression) if x is not None]
        if len(chosen) != 1:
            raise ValueError(f"variant {self.name}: set exactly one of source, quantization or compression")
        if self.name == BASE_VARIANT:
            raise ValueError("variant name 'base' is reserved for the base model")
        if self.quality_gate is not None and not self.gated:
            raise ValueError(
                f"spec.variants[{self.name}].qualityGate needs a checkpoint the evaluation Job can read: a "
                "compression variant or a pvc:// source (online quantization has none)"
            )
        return self

    @property
    def gated(self) -> bool:
        """Whether a rollout to this variant runs the quality gate first."""
        return self.compression is not None or (self.source is not None and self.source.startswith("pvc://"))

    @property
    def gate(self) -> QualityGateSpec:
        """The variant's quality gate (the defaults when unset)."""
        return self.quality_gate or QualityGateSpec()


class AnalysisSpec(ApiModel):
    """Thresholds checked at every rollout step; a breach rolls back."""

    max_ttft_p95_ratio: float = Field(
        default=1.5,
        gt=0,
        description="Largest allowed ratio of canary to baseline 95th percentile time to first token.",
    )
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Largest allowed canary error rate (0-1).")
    min_samples: int = Field(default=50, ge=1, le=1_000_000, description="Requests needed before a step is judged.")


class RolloutSpec(ApiModel):
    """A staged, analysed traffic shift to a variant (or back to base)."""

    target_variant: str = Field(
        description="Variant to shift traffic to: a name from spec.variants, or 'base'.",
        pattern=DNS_LABEL_PATTERN,
        max_length=20,
    )
    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default=[10, 50, 100],
        min_length=1,
        max_length=20,
        description="Traffic weights (percent, increasing) of the target at successive steps.",
    )
    step_duration_seconds: int = Field(default=300, ge=1, le=86_400, description="Least time spent at each step.")
    step_requests: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Least canary requests served at each step, if set."
    )
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec, description="Rollback thresholds.")
    paused: bool = Field(default=False, description="Hold the rollout at its current step.")
    abort: bool = Field(default=False, description="Roll back to the previous variant now.")

    @model_validator(mode="after")
    def _steps(self) -> RolloutSpec:
        if any(not 1 <= w <= 100 for w in self.steps) or list(self.steps) != sorted(self.steps):
            raise ValueError("spec.rollout.steps must be increasing weights between 1 and 100")
        return self


class SecretKeyRef(ApiModel):
    """A key in a Secret in the DialogueModel's namespace."""

    name: str = Field(description="Secret name.", pattern=DNS_SUBDOMAIN_PATTERN, max_length=253)
    key: str = Field(
        default="api-key", description="Key within the Secret.", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$"
    )


class SecuritySpec(ApiModel):
    """API authentication and network isolation of the runtime pods."""

    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the API key the engine requires on /v1."
    )
    network_policy: bool = Field(
        default=True, description="Create a NetworkPolicy admitting only the gateway, the operator and metrics scrapes."
    )


class CacheSpec(ApiModel):
    """Where model weights are cached inside runtime pods (mounted at /models)."""

    pvc_name: str | None = Field(
        default=None,
        description="PersistentVolumeClaim holding the model cache; without it an emptyDir is used.",
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
    )
    read_only: bool = Field(default=False, description="Mount the cache read-only (a pre-filled shared volume).")

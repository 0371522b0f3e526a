"""The DialogueModel status: conditions, replica counts, per-variant traffic weights, the endpoint (pure pydantic)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

CONDITION_READY = "Ready"
CONDITION_PROGRESSING = "Progressing"
CONDITION_DEGRADED = "Degraded"
# The rollout target's step (Compressing, Evaluating, Canary, Promoted, RolledBack, QualityGateFailed, ...).
CONDITION_VARIANT_READY = "VariantReady"

# Condition reasons (CamelCase, as Kubernetes conventions ask).
REASON_AVAILABLE = "Available"
REASON_INVALID_SPEC = "InvalidSpec"
REASON_INSUFFICIENT_GPU = "InsufficientGPU"
REASON_UNSCHEDULABLE = "Unschedulable"
REASON_IMAGE_PULL_FAILED = "ImagePullFailed"
REASON_CRASH_LOOPING = "CrashLooping"
REASON_CONTAINER_CONFIG_ERROR = "ContainerConfigError"  # the kubelet's CreateContainerConfigError
REASON_OOM_KILLED = "OOMKilled"
REASON_ENGINE_FAILED = "EngineFailed"
REASON_MODEL_LOADING = "ModelLoading"
REASON_ENGINE_NOT_READY = "EngineNotReady"  # started (startup probe passed), readiness probe failing
REASON_PENDING = "Pending"
REASON_SCALED_TO_ZERO = "ScaledToZero"
REASON_SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 (a condition reason, not a password)
REASON_CLAIM_NOT_FOUND = "ClaimNotFound"
REASON_CLAIM_PENDING = "ClaimPending"  # the scheduler waits for the model's claim to bind
REASON_SERVED_NAME_CONFLICT = "ServedNameConflict"
REASON_RECONCILED = "Reconciled"
REASON_AS_EXPECTED = "AsExpected"

VariantPhase = Literal["Pending", "Progressing", "Ready", "Degraded", "ScaledToZero"]


class StatusModel(BaseModel):
    """Base of status objects: camelCase, written by the operator only."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)


class Condition(StatusModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(
        description="Condition type: Ready, Progressing, Degraded, or VariantReady (the rollout target's step).",
        max_length=316,
    )
    status: Literal["True", "False", "Unknown"] = Field(description="Condition status.")
    reason: str = Field(description="CamelCase reason for the last transition.", max_length=1024)
    message: str = Field(default="", description="Human-readable detail.", max_length=32_768)
    last_transition_time: str = Field(
        description="When the status last changed (RFC 3339).", json_schema_extra={"format": "date-time"}
    )
    observed_generation: int | None = Field(default=None, ge=0, description="Generation this condition is about.")


class VariantStatus(StatusModel):
    """Observed state of one variant (the base model is the variant named 'base')."""

    name: str = Field(description="Variant name ('base' for the base model).", max_length=20)
    weight: int = Field(
        default=0, ge=0, le=100, description="Share of new conversations routed to this variant, percent."
    )
    replicas: int = Field(default=0, ge=0, description="Pods of this variant.")
    ready_replicas: int = Field(default=0, ge=0, description="Ready pods of this variant.")
    phase: VariantPhase = Field(default="Pending", description="Pending, Progressing, Ready, Degraded or ScaledToZero.")


class DialogueModelStatus(StatusModel):
    """Observed state of a DialogueModel."""

    observed_generation: int | None = Field(default=None, ge=0, description="Spec generation last reconciled.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Progressing and Degraded conditions; VariantReady while spec.rollout has a target.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    replicas: int = Field(default=0, ge=0, description="Runtime pods across all variants.")
    ready_replicas: int = Field(default=0, ge=0, description="Ready runtime pods across all variants.")
    selector: str = Field(default="", description="Label selector of runtime pods (for the scale subresource).")
    endpoint: str = Field(default="", description="In-cluster URL of the OpenAI-compatible API.")
    traffic: str = Field(default="", description="Traffic split summary, e.g. base=90,w8a8=10.")
    variants: list[VariantStatus] = Field(
        default_factory=list,
        description="Per-variant weights and replica counts; the gateway splits traffic by these weights.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    autoscaling: dict[str, Any] | None = Field(
        default=None,
        description="State of the autoscaler (desiredReplicas and its own fields); survives operator restarts.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    rollout: dict[str, Any] | None = Field(
        default=None,
        description="State of the rollout state machine; survives operator restarts.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    def condition(self, type_: str) -> Condition | None:
        """The condition of the given type, if present."""
        return next((c for c in self.conditions if c.type == type_), None)

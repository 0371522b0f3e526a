"""The DialogueModel spec: the whole user-facing desired state and its cross-field rules (pure pydantic)."""

from __future__ import annotations

from pydantic import ConfigDict, Field, model_validator

from dialogue_operator.api.common import ApiModel, cel
from dialogue_operator.api.model import EngineSpec, ModelSpec, ResourcesSpec, SchedulingSpec
from dialogue_operator.api.serving import (
    BASE_VARIANT,
    AutoscalingSpec,
    CacheSpec,
    DialogueSpec,
    RolloutSpec,
    SecuritySpec,
    VariantSpec,
)


class DialogueModelSpec(ApiModel):
    """Desired state of a DialogueModel: a model served as a chat service."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.replicas) && has(self.autoscaling) && self.autoscaling.enabled)",
                    "spec.replicas and spec.autoscaling are mutually exclusive: remove one (or set "
                    "autoscaling.enabled: false)",
                    ".replicas",
                ),
                cel(
                    "(has(self.engine.kind) && self.engine.kind != 'vllm') || !has(self.resources.gpus) || "
                    "self.resources.gpus >= 1",
                    "spec.resources.gpus must be at least 1 for engine kind vllm",
                    ".resources.gpus",
                ),
                cel(
                    "!has(self.rollout) || self.rollout.targetVariant == 'base' || "
                    "(has(self.variants) && self.variants.exists(v, v.name == self.rollout.targetVariant))",
                    "spec.rollout.targetVariant must name a variant in spec.variants (or 'base')",
                    ".rollout.targetVariant",
                ),
                cel(
                    "self.variants.all(v, !has(v.engine) || !has(v.engine.sim) || "
                    "(has(self.engine.kind) && self.engine.kind == 'sim'))",
                    "spec.variants[].engine.sim is only allowed with spec.engine.kind sim",
                    ".variants",
                ),
            ]
        }
    )

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="The inference engine.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Per-replica compute resources.")
    scheduling: SchedulingSpec = Field(default_factory=SchedulingSpec, description="Pod placement constraints.")
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Fixed replica count (kubectl scale writes it); exclusive with an enabled spec.autoscaling. "
        "Defaults to 1 when neither is set.",
    )
    autoscaling: AutoscalingSpec | None = Field(default=None, description="Autoscaling bounds and targets.")
    dialogue: DialogueSpec = Field(default_factory=DialogueSpec, description="Conversation settings.")
    variants: list[VariantSpec] = Field(
        default_factory=list,
        max_length=8,
        description="Alternative builds of the model (quantized or compressed) a rollout can shift traffic to.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    rollout: RolloutSpec | None = Field(default=None, description="A staged traffic shift to a variant.")
    security: SecuritySpec = Field(default_factory=SecuritySpec, description="Authentication and network isolation.")
    cache: CacheSpec = Field(default_factory=CacheSpec, description="Model cache volume.")

    @model_validator(mode="after")
    def _cross_field(self) -> DialogueModelSpec:
        if self.replicas is not None and self.autoscaling is not None and self.autoscaling.enabled:
            raise ValueError("spec.replicas and spec.autoscaling are mutually exclusive")
        if self.engine.kind == "vllm" and self.resources.gpus < 1:
            raise ValueError("spec.resources.gpus must be at least 1 for engine kind vllm")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError("spec.variants: names must be unique")
        if self.rollout is not None and self.rollout.target_variant not in {BASE_VARIANT, *names}:
            raise ValueError("spec.rollout.targetVariant must name a variant in spec.variants (or 'base')")
        sim_variants = [v.name for v in self.variants if v.engine is not None and v.engine.sim is not None]
        if sim_variants and self.engine.kind != "sim":
            raise ValueError(
                "spec.variants[].engine.sim is only allowed with spec.engine.kind sim "
                f"(set on {', '.join(sim_variants)})"
            )
        return self

    def variant(self, name: str) -> VariantSpec | None:
        """The variant called `name`, or None (also for 'base')."""
        return next((v for v in self.variants if v.name == name), None)

    @property
    def autoscaling_enabled(self) -> bool:
        """Whether the autoscaler, not spec.replicas, decides the replica count."""
        return self.autoscaling is not None and self.autoscaling.enabled

"""Renders the runtime contract `EngineConfig` for one variant of a DialogueModel (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from dialogue_runtime import contract
from dialogue_runtime.engine.config import EngineConfig, SimProfile

from dialogue_operator.api import BASE_VARIANT
from dialogue_operator.reconcile.model import InvalidSpec, ModelObject
from dialogue_operator.settings import Settings


@dataclass(frozen=True)
class ModelVolume:
    """Which claim (if any) is mounted at /models, and where the weights are inside the container."""

    claim: str | None
    read_only: bool
    local_path: str | None


def model_volume(model: ModelObject, source: str) -> ModelVolume:
    """pvc:// sources mount their claim at /models; otherwise the cache PVC (or an emptyDir) is mounted there."""
    if source.startswith("pvc://"):
        claim, _, path = source.removeprefix("pvc://").partition("/")
        local = f"{contract.MODEL_CACHE_MOUNT}/{path}".rstrip("/")
        return ModelVolume(claim=claim, read_only=True, local_path=local)
    cache = model.spec.cache
    return ModelVolume(claim=cache.pvc_name, read_only=cache.read_only, local_path=None)


def variant_source(model: ModelObject, variant: str) -> str:
    """The weights a variant serves: its own pre-quantized source, else the base model's."""
    spec = model.spec.variant(variant)
    if variant != BASE_VARIANT and spec is None:
        raise InvalidSpec(f"DialogueModel {model.namespace}/{model.name}: no variant named {variant!r}")
    if spec is not None and spec.source is not None:
        return spec.source
    return model.spec.model.source


def build_engine_config(model: ModelObject, variant: str, settings: Settings) -> EngineConfig:
    """The engine configuration one variant's pods read from /etc/dialogue/engine.json (the base's engine
    settings with the variant's `engine` override applied)."""
    spec = model.spec
    variant_spec = spec.variant(variant)
    source = variant_source(model, variant)
    volume = model_volume(model, source)
    local_path = volume.local_path
    if variant_spec is not None and variant_spec.compression is not None:
        # The compression Job writes its output into the model cache under this path.
        local_path = f"{contract.MODEL_CACHE_MOUNT}/compressed/{model.name}-{variant}"
    override = variant_spec.engine if variant_spec is not None else None
    sim: SimProfile | None = None
    if spec.engine.kind == "sim":
        fields = spec.engine.sim.model_dump(exclude_none=True) if spec.engine.sim else {}
        if override is not None and override.sim is not None:
            fields.update(override.sim.model_dump(exclude_none=True))  # the variant's fields win one by one
        sim = SimProfile(**fields)
    # The engine's parser keeps the last value of a repeated flag: the variant's args override the base's.
    extra_args = [*spec.engine.args, *(override.args if override is not None else [])]
    return EngineConfig(
        engine=spec.engine.kind,
        model_name=model.name,
        variant=variant,
        served_model_name=model.served_name,
        source=source,
        local_path=local_path,
        max_model_len=spec.model.max_context_tokens,
        tensor_parallel_size=max(1, spec.resources.gpus) if spec.engine.kind == "vllm" else 1,
        quantization=variant_spec.quantization if variant_spec is not None else None,
        chat_template=spec.dialogue.chat_template,
        extra_args=extra_args,
        port=contract.ENGINE_PORT,
        api_key_env=contract.ENGINE_API_KEY_ENV if spec.security.api_key_secret_ref is not None else None,
        # Drain in-flight requests on SIGTERM, finishing before the kubelet's SIGKILL.
        shutdown_grace_s=max(0, settings.termination_grace_s - 10),
        sim=sim,
    )

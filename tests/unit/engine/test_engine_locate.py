"""Locating the model: pvc:// paths, the Hugging Face cache, and clear errors when it is nowhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from dialogue_runtime.engine.config import EngineConfig
from dialogue_runtime.engine.locate import ModelNotFound, locate_model


def config(source: str, local_path: str | None = None) -> EngineConfig:
    return EngineConfig(
        model_name="chat", variant="base", served_model_name="chat", source=source, local_path=local_path
    )


def model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_local_path_with_weights_wins(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "smollm2")
    assert locate_model(config("pvc://cache/smollm2", str(folder)), env={}).model == str(folder)


def test_missing_pvc_path_names_the_path_and_the_claim(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound) as err:
        locate_model(config("pvc://cache/nope", str(tmp_path / "nope")), env={})
    assert str(tmp_path / "nope") in str(err.value) and "does not exist" in str(err.value)
    with pytest.raises(ModelNotFound, match=r"/models/nope \(claim 'cache' mounted at /models\) does not exist"):
        locate_model(config("pvc://cache/nope"), env={})


def test_a_folder_without_config_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"no config\.json"):
        locate_model(config("pvc://cache/empty", str(tmp_path / "empty")), env={})


def test_hf_source_found_in_the_hf_cache_by_branch(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("c0ffee\n")
    model_folder(repo / "snapshots" / "c0ffee")
    found = locate_model(config("hf://org/tiny"), env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert found.model == str(repo / "snapshots" / "c0ffee") and not found.downloads


def test_hf_source_not_cached_without_network_is_a_clear_error(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    with pytest.raises(ModelNotFound, match=r"model hf://org/big@v2 is not in the model cache .* no network"):
        locate_model(config("hf://org/big@v2"), env=env, network_available=lambda: True)
    with pytest.raises(ModelNotFound, match="no network"):
        locate_model(config("hf://org/big"), env={"HF_HUB_CACHE": str(tmp_path)}, network_available=lambda: False)


def test_hf_source_downloads_when_online(tmp_path: Path) -> None:
    found = locate_model(config("hf://org/big@v2"), env={"HF_HUB_CACHE": str(tmp_path)}, network_available=lambda: True)
    assert (found.model, found.revision, found.downloads) == ("org/big", "v2", True)


def test_other_schemes_must_be_in_the_cache() -> None:
    with pytest.raises(ModelNotFound, match="pvc:// and hf://"):
        locate_model(config("s3://bucket/model"), env={})

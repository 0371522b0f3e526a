"""Finds the model weights a runtime pod should serve, from the engine configuration's source URI (pure paths).

`pvc://claim/path` lives where the claim is mounted (`contract.MODEL_CACHE_MOUNT`, or `local_path` when the
operator says where); `hf://org/name@rev` is looked up in the Hugging Face cache first and handed to vLLM to
download only when the pod is allowed and able to reach the hub; anything else must already be on disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dialogue_runtime import contract
from dialogue_runtime.engine.config import EngineConfig


class ModelNotFound(Exception):
    """The model cannot be served from here; the message says what was looked for, where, and what to do."""


@dataclass(frozen=True)
class ModelLocation:
    """What to hand vLLM as `--model` (a folder, or a hub id to download) and the revision, if any."""

    model: str
    revision: str | None = None
    downloads: bool = False


def _has_weights(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def hf_cache_dir(env: Mapping[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    hf_home = env.get("HF_HOME") or str(Path(env.get("HOME", "/root")) / ".cache" / "huggingface")
    return Path(hf_home) / "hub"


def hf_cached_snapshot(repo_id: str, revision: str | None, env: Mapping[str, str]) -> Path | None:
    """The snapshot folder of `repo_id` at `revision` (a branch, tag or commit) in the HF cache, if it is there."""
    repo_dir = hf_cache_dir(env) / f"models--{repo_id.replace('/', '--')}"
    rev = revision or "main"
    ref = repo_dir / "refs" / rev
    commit = ref.read_text().strip() if ref.is_file() else rev
    snapshot = repo_dir / "snapshots" / commit
    return snapshot if _has_weights(snapshot) else None


def locate_model(
    config: EngineConfig,
    env: Mapping[str, str] | None = None,
    network_available: Callable[[], bool] = lambda: False,
) -> ModelLocation:
    """Where the weights for `config` are; raises ModelNotFound with an actionable message."""
    env = os.environ if env is None else env
    source = config.source
    if config.local_path:
        folder = Path(config.local_path)
        if _has_weights(folder):
            return ModelLocation(str(folder))
        if not source.startswith("hf://"):
            raise ModelNotFound(_missing_message(source, folder))
    if source.startswith("pvc://"):
        claim, _, sub = source.removeprefix("pvc://").partition("/")
        folder = Path(contract.MODEL_CACHE_MOUNT) / sub
        if _has_weights(folder):
            return ModelLocation(str(folder))
        raise ModelNotFound(_missing_message(source, folder, claim))
    if source.startswith("hf://"):
        repo_id, _, revision = source.removeprefix("hf://").partition("@")
        snapshot = hf_cached_snapshot(repo_id, revision or None, env)
        if snapshot is not None:
            return ModelLocation(str(snapshot), revision or None)
        offline = env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        if not offline and network_available():
            return ModelLocation(repo_id, revision or None, downloads=True)
        where = f" or at {config.local_path}" if config.local_path else ""
        why = " (HF_HUB_OFFLINE is set)" if offline else ""
        raise ModelNotFound(
            f"model {source} is not in the model cache ({hf_cache_dir(env)}{where}) and the cluster has no network"
            f"{why}: pre-load it into the cache volume, or use a pvc:// source"
        )
    raise ModelNotFound(
        f"model {source}: this engine reads only pvc:// and hf:// sources directly; "
        f"copy the weights into the model cache and set the source to pvc://<claim>/<path>"
    )


def _missing_message(source: str, folder: Path, claim: str | None = None) -> str:
    mounted = f" (claim {claim!r} mounted at {contract.MODEL_CACHE_MOUNT})" if claim else ""
    if not folder.exists():
        problem = "does not exist"
    elif not folder.is_dir():
        problem = "is not a folder"
    else:
        problem = "has no config.json (not a Hugging Face model folder)"
    return f"model {source} not found: {folder}{mounted} {problem}; check the path in the DialogueModel's source"

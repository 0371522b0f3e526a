"""The identity of a model folder (runtime, reads files): a hash of its config and a manifest of its weights.

Two folders with the same identity hold the same model, so an artifact compressed from one is reused for the
other. Weight files are hashed in full up to `FULL_HASH_LIMIT_BYTES` in total; beyond that (multi-GB models)
the manifest holds each file's size, its safetensors header (names, dtypes, shapes, offsets) and a digest of
`SAMPLES_PER_FILE` evenly spaced chunks, so identifying a 70B model stays a matter of seconds.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from dialogue_runtime.compress.errors import ModelError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json")
FULL_HASH_LIMIT_BYTES = 4 * 2**30
SAMPLES_PER_FILE = 64
SAMPLE_BYTES = 64 * 2**10
_CHUNK_BYTES = 8 * 2**20


def read_config(model_dir: Path) -> dict[str, Any]:
    config_path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise ModelError(f"model folder not found: {model_dir}")
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"no config.json in model folder {model_dir}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {config_path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelError(f"{config_path} does not hold a JSON object")
    return config


def weight_files(model_dir: Path) -> list[Path]:
    files = sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise ModelError(f"no weight files ({', '.join(WEIGHT_SUFFIXES)}) in model folder {model_dir}")
    return files


def _full_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _sampled_digest(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if path.suffix == ".safetensors" and size >= 8:
            header_len = struct.unpack("<Q", fh.read(8))[0]
            digest.update(fh.read(min(header_len, size - 8)))
        step = max(size // SAMPLES_PER_FILE, 1)
        for offset in range(0, size, step):
            fh.seek(offset)
            digest.update(fh.read(SAMPLE_BYTES))
    return "sampled:" + digest.hexdigest()


def manifest(model_dir: Path, full_hash_limit_bytes: int = FULL_HASH_LIMIT_BYTES) -> list[dict[str, Any]]:
    files = weight_files(model_dir)
    total = sum(p.stat().st_size for p in files)
    full = total <= full_hash_limit_bytes
    entries = []
    for path in files:
        size = path.stat().st_size
        digest = _full_digest(path) if full else _sampled_digest(path, size)
        entries.append({"name": path.name, "size": size, "digest": digest})
    for name in TOKENIZER_FILES:
        path = model_dir / name
        if path.is_file():
            entries.append({"name": name, "size": path.stat().st_size, "digest": _full_digest(path)})
    return entries


def model_identity(model_dir: Path, full_hash_limit_bytes: int = FULL_HASH_LIMIT_BYTES) -> str:
    """sha256 (hex) over the canonical config.json and the weights manifest."""
    config = read_config(model_dir)
    try:
        files = manifest(model_dir, full_hash_limit_bytes)
        blob = json.dumps({"config": config, "files": files}, sort_keys=True, separators=(",", ":"))
    except OSError as exc:
        raise ModelError(f"cannot read model folder {model_dir}: {exc}") from exc
    return hashlib.sha256(blob.encode()).hexdigest()

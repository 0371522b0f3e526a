"""A tiny fake model folder (config.json, a safetensors-shaped weight file, a tokenizer file) for pure tests."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BYTES_PER_PARAMETER = {"BF16": 2, "F16": 2, "F32": 4}


def fake_model(folder: Path, weights: bytes = b"\x01" * 4096, hidden_size: int = 576, dtype: str = "BF16") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"hidden_size": hidden_size, "intermediate_size": 1536}))
    shape = [len(weights) // BYTES_PER_PARAMETER[dtype]]
    header = json.dumps({"w": {"dtype": dtype, "shape": shape, "data_offsets": [0, len(weights)]}})
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + weights)
    (folder / "tokenizer.json").write_text("{}")
    return folder

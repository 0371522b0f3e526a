"""The compression job's free-space precheck (runtime, reads files): will the artifact fit on the output volume?

A full volume used to be found only at `save`, after the whole (GPU) compression. The job now estimates the
artifact's size before loading the model and fails `StorageFull` at once when the volume has less free space:

    need = base weights at 16 bits per parameter x the scheme's ratio x (1 + MARGIN) + the base's other files

Ratios of the compressed weights to the 16-bit base weights, measured on SmolLM2-135M-Instruct (bf16, 269.1 MB
of weights; llm-compressor 0.14): FP8_DYNAMIC 0.607, W8A8 0.607, W4A16 g64 0.421, W4A16_ASYM g64 0.424, W4A16
g32 0.433, W4A16_ASYM g32 0.439, W4A16 g16 0.458. The ratios below round these up; MARGIN (10 %) covers smaller
groups (g16 stays 3 % under the W4 estimate) and the safetensors headers. The share of layers kept at 16 bits
(embeddings, lm_head, norms) is largest on small models, so on a bigger model the estimate errs on the safe side
(more than needed, never less). It is a precheck, not a reservation: another writer can still fill the volume
during the run, and the job's ENOSPC handling (partial output removed, nothing committed) stays the safety net.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dialogue_runtime.compress.errors import StorageError
from dialogue_runtime.compress.identity import WEIGHT_SUFFIXES, weight_files
from dialogue_runtime.compress.recipe import Scheme

ARTIFACT_RATIO: dict[Scheme, float] = {
    Scheme.FP8_DYNAMIC: 0.62,
    Scheme.W8A8: 0.62,
    Scheme.W4A16: 0.43,
    Scheme.W4A16_ASYM: 0.43,
}
MARGIN = 0.10
_BYTES_16BIT = 2
_MAX_HEADER_BYTES = 100 * 2**20  # safetensors' own limit
MIB = 2**20

DiskUsage = Callable[[Path], Any]  # shutil.disk_usage: anything with a `.free` in bytes


@dataclass(frozen=True)
class SpaceEstimate:
    """How many bytes the artifact of `scheme` compressed from one base model will take, and why."""

    scheme: Scheme
    weights_16bit_bytes: int
    other_bytes: int

    @property
    def ratio(self) -> float:
        return ARTIFACT_RATIO[self.scheme]

    @property
    def need_bytes(self) -> int:
        return math.ceil(self.weights_16bit_bytes * self.ratio * (1 + MARGIN)) + self.other_bytes

    def explain(self) -> str:
        return (
            f"{self.weights_16bit_bytes / MIB:.1f} MiB of base weights x {self.ratio} for {self.scheme.value} "
            f"+ {MARGIN:.0%} margin + {self.other_bytes / MIB:.1f} MiB of tokenizer and config"
        )


def _safetensors_parameters(path: Path) -> int | None:
    """Number of parameters in a safetensors file from its header; None if the header cannot be read."""
    try:
        with path.open("rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            if header_len > _MAX_HEADER_BYTES:
                return None
            header = json.loads(fh.read(header_len))
    except (OSError, struct.error, ValueError):
        return None
    if not isinstance(header, dict):
        return None
    total = 0
    for name, tensor in header.items():
        if name == "__metadata__":
            continue
        shape = tensor.get("shape") if isinstance(tensor, dict) else None
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            return None
        total += math.prod(shape)
    return total


def weights_16bit_bytes(base: Path) -> int:
    """The base's weights at 16 bits per parameter (an fp32 checkpoint counts half its file size); weight files
    whose header cannot be read (other formats, damaged headers) count at their file size."""
    total = 0
    for path in weight_files(base):
        params = _safetensors_parameters(path) if path.suffix == ".safetensors" else None
        total += params * _BYTES_16BIT if params is not None else path.stat().st_size
    return total


def estimate(base: Path, scheme: Scheme) -> SpaceEstimate:
    """The artifact size estimate for compressing `base` with `scheme` (see the module docstring)."""
    others = [p for p in base.iterdir() if p.is_file() and p.suffix not in WEIGHT_SUFFIXES]
    return SpaceEstimate(
        scheme=scheme,
        weights_16bit_bytes=weights_16bit_bytes(base),
        other_bytes=sum(p.stat().st_size for p in others),
    )


def check_free_space(where: Path, need: SpaceEstimate, label: str, disk_usage: DiskUsage = shutil.disk_usage) -> int:
    """The free bytes at `where`; raises StorageError (StorageFull) when the artifact will not fit."""
    free = int(disk_usage(where).free)
    if free < need.need_bytes:
        raise StorageError(
            f"no space left on the output volume for the {label} artifact: need ~{need.need_bytes / MIB:.1f} MiB, "
            f"{free / MIB:.1f} MiB free at {where} (estimate: {need.explain()}); the base model was not loaded"
        )
    return free

"""Compression recipes as data (pure): schemes, their parameters, validation against the model, a stable id.

The recipe is what the user writes in `spec.variants[].compression`; `recipe_id()` is the canonical hash that,
with the base model's identity, names the output folder. Building llm-compressor modifiers from it happens in
`oneshot.py`, inside the compress environment only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from dialogue_runtime.compress.errors import RecipeError

# Bump when the way a scheme is turned into modifiers changes: old artifacts then stop matching.
RECIPE_FORMAT_VERSION = 1


class Scheme(StrEnum):
    FP8_DYNAMIC = "FP8_DYNAMIC"  # FP8 weights per channel, dynamic per-token FP8 activations; no calibration
    W8A8 = "W8A8"  # INT8 weights (GPTQ) and dynamic per-token INT8 activations, after SmoothQuant
    W4A16 = "W4A16"  # INT4 weights in groups (GPTQ), 16-bit activations; symmetric, like llm-compressor's preset
    # The same with a zero point per group. On SmolLM2 (g64, default calibration, 16 golden dialogues) recovery
    # was 0.86 against 0.69 for the symmetric preset: small models need the zero point.
    W4A16_ASYM = "W4A16_ASYM"


GROUPED_SCHEMES = frozenset({Scheme.W4A16, Scheme.W4A16_ASYM})
CALIBRATED_SCHEMES = frozenset({Scheme.W8A8, Scheme.W4A16, Scheme.W4A16_ASYM})
DEFAULT_GROUP_SIZE = 128


@dataclass(frozen=True)
class Recipe:
    """One compression recipe; `calibration` is `default` (the shipped set) or a path."""

    scheme: Scheme
    group_size: int | None = None
    calibration: str = "default"
    num_calibration_samples: int = 64
    max_seq_length: int = 256
    smoothing_strength: float = 0.8
    dampening_frac: float = 0.01

    def __post_init__(self) -> None:
        if self.scheme in GROUPED_SCHEMES:
            if self.group_size is None:
                object.__setattr__(self, "group_size", DEFAULT_GROUP_SIZE)
            elif self.group_size < 1:
                raise RecipeError(f"group size must be a positive integer, got {self.group_size}")
        elif self.group_size is not None:
            raise RecipeError(f"scheme {self.scheme.value} takes no group size (got {self.group_size})")
        if self.num_calibration_samples < 1 or self.max_seq_length < 8:
            raise RecipeError("calibration needs at least 1 sample and a max sequence length of 8 tokens")

    @property
    def needs_calibration(self) -> bool:
        return self.scheme in CALIBRATED_SCHEMES

    def canonical(self, calibration_digest: str | None) -> dict[str, Any]:
        """The fields that determine the output, with the calibration set's content digest instead of its path."""
        data = asdict(self)
        data["scheme"] = self.scheme.value
        data["calibration"] = calibration_digest if self.needs_calibration else None
        if not self.needs_calibration:
            for key in ("num_calibration_samples", "max_seq_length", "smoothing_strength", "dampening_frac"):
                data[key] = None
        data["format"] = RECIPE_FORMAT_VERSION
        return data

    def label(self) -> str:
        """A short readable name for folders and logs, e.g. `w4a16-g64`."""
        name = self.scheme.value.lower().replace("_", "-")
        return f"{name}-g{self.group_size}" if self.group_size is not None else name


def parse_scheme(text: str) -> Scheme:
    normalized = text.strip().upper().replace("-", "_")
    try:
        return Scheme(normalized)
    except ValueError:
        known = ", ".join(s.value for s in Scheme)
        raise RecipeError(f"unknown compression scheme {text!r}; known: {known}") from None


def recipe_id(recipe: Recipe, calibration_digest: str | None) -> str:
    """sha256 (hex) of the canonical recipe: equal recipes on equal calibration data give equal ids."""
    blob = json.dumps(recipe.canonical(calibration_digest), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def check_compatible(recipe: Recipe, model_config: dict[str, Any]) -> None:
    """Refuses recipes the model cannot take before any expensive work (e.g. group size vs hidden size).

    Every Linear layer's input dimension is either the hidden size or the MLP intermediate size, so a group
    size must divide both.
    """
    if recipe.group_size is None:
        return
    dims = {
        key: model_config[key]
        for key in ("hidden_size", "intermediate_size")
        if isinstance(model_config.get(key), int) and model_config[key] > 0
    }
    for key, dim in sorted(dims.items()):
        if dim % recipe.group_size:
            raise RecipeError(
                f"group size {recipe.group_size} does not divide the model's {key} {dim} "
                f"(scheme {recipe.scheme.value}); choose a divisor of {dim}, e.g. "
                f"{_largest_power_of_two_divisor(dim, recipe.group_size)}"
            )


def _largest_power_of_two_divisor(dim: int, at_most: int) -> int:
    size = 1
    while size * 2 <= at_most and dim % (size * 2) == 0:
        size *= 2
    return size

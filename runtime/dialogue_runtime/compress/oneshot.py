"""llm-compressor oneshot for one recipe (runtime, compress environment only): modifiers, calibration, save.

Only `job.py` imports this module, and only once there is work to do, so the rest of the package stays
importable (and testable) without torch, transformers and llmcompressor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from datasets import Dataset  # type: ignore[import-not-found]  # only in the compress venv; untyped there
from llmcompressor import oneshot
from llmcompressor.modifiers.gptq import GPTQModifier
from llmcompressor.modifiers.quantization import QuantizationModifier
from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier
from transformers import AutoModelForCausalLM, AutoTokenizer

from dialogue_runtime.compress.calibration_set import CalibrationSet
from dialogue_runtime.compress.recipe import Recipe, Scheme

# Never quantize the output head: it is small and quality-sensitive (the llm-compressor examples do the same).
IGNORE = ["lm_head"]


def build_modifiers(recipe: Recipe) -> list[Any]:
    """The llm-compressor modifiers for a recipe."""
    if recipe.scheme is Scheme.FP8_DYNAMIC:
        return [QuantizationModifier(targets="Linear", scheme="FP8_DYNAMIC", ignore=IGNORE)]
    if recipe.scheme is Scheme.W8A8:
        return [
            SmoothQuantModifier(smoothing_strength=recipe.smoothing_strength),
            GPTQModifier(targets="Linear", scheme="W8A8", ignore=IGNORE, dampening_frac=recipe.dampening_frac),
        ]
    if recipe.scheme in (Scheme.W4A16, Scheme.W4A16_ASYM):
        weights = {
            "num_bits": 4,
            "type": "int",
            "symmetric": recipe.scheme is Scheme.W4A16,
            "strategy": "group",
            "group_size": recipe.group_size,
            "dynamic": False,
        }  # the W4A16 preset with our group size (the preset's 128 does not divide every hidden size)
        groups = {"group_0": {"targets": ["Linear"], "weights": weights}}
        return [GPTQModifier(config_groups=groups, ignore=IGNORE, dampening_frac=recipe.dampening_frac)]
    raise AssertionError(f"unhandled scheme {recipe.scheme}")


def _calibration_dataset(calibration: CalibrationSet, tokenizer: Any, recipe: Recipe) -> Any:
    texts = []
    for sample in calibration.samples[: recipe.num_calibration_samples]:
        if isinstance(sample, str):
            texts.append(sample)
        else:
            texts.append(tokenizer.apply_chat_template(list(sample), tokenize=False))
    encoded = tokenizer(texts, truncation=True, max_length=recipe.max_seq_length, add_special_tokens=False)
    return Dataset.from_dict({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]})


def load_base(base_dir: Path) -> tuple[Any, Any]:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    return model, tokenizer


def compress(model: Any, tokenizer: Any, recipe: Recipe, calibration: CalibrationSet | None) -> None:
    """Runs oneshot in place on `model`."""
    kwargs: dict[str, Any] = {"model": model, "recipe": build_modifiers(recipe)}
    if calibration is not None:
        dataset = _calibration_dataset(calibration, tokenizer, recipe)
        kwargs.update(
            dataset=dataset,
            max_seq_length=recipe.max_seq_length,
            num_calibration_samples=len(dataset),
            shuffle_calibration_samples=False,
        )
    oneshot(**kwargs)


def save(model: Any, tokenizer: Any, out_dir: Path) -> None:
    model.save_pretrained(str(out_dir), save_compressed=True)
    tokenizer.save_pretrained(str(out_dir))

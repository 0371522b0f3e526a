"""Scores golden dialogues on the base and a variant with transformers (runtime, compress environment only).

Per dialogue, for each model: one teacher-forced forward pass over chat prompt + reference reply (its
log-probability), the base's greedy continuation of N tokens, and one teacher-forced pass of the variant over
that continuation (top-1 agreement), plus the variant's own greedy continuation (exact match). The job loads
the models one at a time and keeps only the base's numbers, so peak memory is one model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dialogue_runtime.evaluate.base_cache import BaseResult
from dialogue_runtime.evaluate.golden_set import GoldenDialogue
from dialogue_runtime.evaluate.scoring import DialogueScore


@dataclass(frozen=True)
class Encoded:
    id: str
    prompt_ids: list[int]
    reference_ids: list[int]


def load_model(path: Path) -> Any:
    """Loads a plain or a compressed-tensors checkpoint (decompressed to dense weights for CPU)."""
    kwargs: dict[str, Any] = {"dtype": "auto"}
    if (path / "config.json").is_file() and "quantization_config" in (path / "config.json").read_text():
        from transformers import CompressedTensorsConfig  # noqa: PLC0415 - only for compressed checkpoints

        kwargs["quantization_config"] = CompressedTensorsConfig(run_compressed=False)
    model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    model.eval()
    return model


def encode(tokenizer: Any, dialogues: list[GoldenDialogue]) -> list[Encoded]:
    out = []
    for d in dialogues:
        prompt = tokenizer.apply_chat_template(d.chat(), add_generation_prompt=True, tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        reference_ids = tokenizer(d.reference, add_special_tokens=False)["input_ids"]
        out.append(Encoded(id=d.id, prompt_ids=list(prompt_ids), reference_ids=list(reference_ids)))
    return out


def load_tokenizer(path: Path) -> Any:
    return AutoTokenizer.from_pretrained(str(path))


def _continuation_logprobs(model: Any, prompt_ids: list[int], continuation: list[int]) -> tuple[float, list[int]]:
    """Sum of log-probabilities of `continuation` after `prompt`, and the model's top-1 token at each position."""
    ids = torch.tensor([prompt_ids + continuation])
    with torch.inference_mode():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    target = torch.tensor(continuation)
    total = float(logprobs.gather(1, target.unsqueeze(1)).sum())
    return total, [int(t) for t in logits.argmax(dim=-1)]


def _greedy(model: Any, tokenizer: Any, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    ids = torch.tensor([prompt_ids])
    with torch.inference_mode():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        )
    return [int(t) for t in out[0, len(prompt_ids) :]]


def score_base(model: Any, tokenizer: Any, encoded: list[Encoded], max_new_tokens: int) -> list[BaseResult]:
    results = []
    for e in encoded:
        logprob, _ = _continuation_logprobs(model, e.prompt_ids, e.reference_ids)
        results.append(
            BaseResult(logprob_sum=logprob, greedy_ids=_greedy(model, tokenizer, e.prompt_ids, max_new_tokens))
        )
    return results


def score_variant(
    model: Any, tokenizer: Any, encoded: list[Encoded], base: list[BaseResult], max_new_tokens: int
) -> list[DialogueScore]:
    scores = []
    for e, b in zip(encoded, base, strict=True):
        logprob, _ = _continuation_logprobs(model, e.prompt_ids, e.reference_ids)
        agree = 0
        if b.greedy_ids:
            _, top1 = _continuation_logprobs(model, e.prompt_ids, b.greedy_ids)
            agree = sum(1 for x, y in zip(top1, b.greedy_ids, strict=True) if x == y)
        own = _greedy(model, tokenizer, e.prompt_ids, max_new_tokens)
        scores.append(
            DialogueScore(
                id=e.id,
                reference_tokens=len(e.reference_ids),
                base_logprob_sum=b.logprob_sum,
                variant_logprob_sum=logprob,
                agreement_tokens=agree,
                compared_tokens=len(b.greedy_ids),
                exact_match=own == b.greedy_ids,
            )
        )
    return scores

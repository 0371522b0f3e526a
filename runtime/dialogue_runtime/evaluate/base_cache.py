"""Cache of the base model's golden-set results (runtime, files): evaluating N variants scores the base once.

The key covers everything the base's numbers depend on: the base model's identity (config + weights), the
golden dialogues as evaluated, the number of greedy tokens and this file format's version.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from dialogue_runtime.compress.identity import model_identity
from dialogue_runtime.evaluate.golden_set import GoldenDialogue

FORMAT_VERSION = 1


@dataclass(frozen=True)
class BaseResult:
    logprob_sum: float
    greedy_ids: list[int]


def cache_key(base: Path, dialogues: list[GoldenDialogue], max_new_tokens: int) -> str:
    golden = [[d.id, list(d.messages), d.reference] for d in dialogues]
    blob = json.dumps(
        {"base": model_identity(base), "golden": golden, "tokens": max_new_tokens, "format": FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def load(cache_dir: Path, key: str, expected: int) -> list[BaseResult] | None:
    try:
        rows = json.loads((cache_dir / f"base-{key[:32]}.json").read_text())
        results = [BaseResult(float(r["logprob"]), [int(t) for t in r["greedy"]]) for r in rows]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return results if len(results) == expected else None


def save(cache_dir: Path, key: str, results: list[BaseResult]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"base-{key[:32]}.json"
    tmp = target.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps([{"logprob": r.logprob_sum, "greedy": r.greedy_ids} for r in results]))
    tmp.replace(target)

"""The quality-gate job (runtime): golden dialogues through base and variant, recovery, verdict, result file.

`python -m dialogue_runtime.evaluate --base PATH --variant PATH --golden default --threshold 0.9
--output result.json`. Exit 0 whenever the evaluation ran, eligible or not: the verdict is `eligible` in the
result file and in the one-line JSON termination message. Exit 1 with `<Reason>: <message>` when it could not
run (ModelNotFound, GoldenSetMissing, EvaluationFailed). See `scoring.py` for the definitions.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

from dialogue_runtime.compress.termination import Progress, fail, one_line, set_cpu_threads, succeed
from dialogue_runtime.evaluate import base_cache
from dialogue_runtime.evaluate.golden_set import DEFAULT, GoldenSetError, load_golden
from dialogue_runtime.evaluate.scoring import Summary, summarize

JOB = "evaluate"


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def verdict_dict(summary: Summary) -> dict[str, Any]:
    return {_camel(k): v for k, v in summary.to_dict().items()}


class EvaluationError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _check_model(path: Path, what: str) -> None:
    if not (path / "config.json").is_file():
        raise EvaluationError("ModelNotFound", f"{what} model not found: no config.json in {path}")


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    progress.step("golden", str(args.golden))
    try:
        dialogues = load_golden(args.golden)
    except GoldenSetError as exc:
        raise EvaluationError("GoldenSetMissing", str(exc)) from exc
    if args.limit:
        dialogues = dialogues[: args.limit]
    _check_model(args.base, "base")
    _check_model(args.variant, "variant")
    progress.step("load", "importing transformers")
    from dialogue_runtime.evaluate import runner  # noqa: PLC0415 - torch/transformers only once work is needed

    try:
        tokenizer = runner.load_tokenizer(args.base)
        encoded = runner.encode(tokenizer, dialogues)
        progress.step("base", f"{len(encoded)} dialogues, {args.max_new_tokens} greedy tokens each")
        key = base_cache.cache_key(args.base, dialogues, args.max_new_tokens) if args.cache_dir else ""
        base = base_cache.load(args.cache_dir, key, len(encoded)) if args.cache_dir else None
        if base is not None:
            progress.note(f"base results reused from {args.cache_dir}")
        else:
            base_model = runner.load_model(args.base)
            base = runner.score_base(base_model, tokenizer, encoded, args.max_new_tokens)
            del base_model
            gc.collect()
            if args.cache_dir:
                base_cache.save(args.cache_dir, key, base)
        progress.step("variant", str(args.variant))
        variant_model = runner.load_model(args.variant)
        scores = runner.score_variant(variant_model, tokenizer, encoded, base, args.max_new_tokens)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise EvaluationError("EvaluationFailed", f"{type(exc).__name__}: {one_line(str(exc))}") from exc
    progress.step("score")
    summary = summarize(scores, threshold=args.threshold, min_agreement=args.min_agreement)
    progress.done()
    result = {
        **verdict_dict(summary),
        "base": str(args.base),
        "variant": str(args.variant),
        "golden": str(args.golden),
        "maxNewTokens": args.max_new_tokens,
        "timingsSeconds": dict(progress.timings_s),
        "perDialogue": [
            {
                "id": s.id,
                "referenceTokens": s.reference_tokens,
                "baseLogprob": round(s.base_logprob_sum, 4),
                "variantLogprob": round(s.variant_logprob_sum, 4),
                "agreement": f"{s.agreement_tokens}/{s.compared_tokens}",
                "exactMatch": s.exact_match,
            }
            for s in scores
        ],
    }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dialogue_runtime.evaluate", description=__doc__)
    parser.add_argument("--base", required=True, type=Path)
    parser.add_argument("--variant", required=True, type=Path)
    parser.add_argument("--golden", default=DEFAULT, help="'default' (shipped) or a JSON-lines path")
    parser.add_argument("--threshold", type=float, default=0.9, help="minimum recovery (see scoring.py)")
    parser.add_argument("--min-agreement", type=float, default=0.0, help="minimum greedy top-1 agreement")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="greedy tokens compared per dialogue")
    parser.add_argument("--limit", type=int, default=0, help="only the first N dialogues (0: all)")
    parser.add_argument("--output", type=Path, default=None, help="where to write the result JSON")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep/reuse the base's results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # progress bars would flood the Job log; our steps say enough
    set_cpu_threads()
    progress = Progress(JOB)
    try:
        result = run(args, progress)
    except EvaluationError as exc:
        fail(JOB, exc.reason, str(exc))
        return 1
    keys = ("eligible", "recovery", "agreement", "exactMatchRate", "threshold", "dialogues", "reasons")
    succeed(JOB, {k: result[k] for k in keys})
    return 0

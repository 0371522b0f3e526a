"""Quality-gate arithmetic (pure): per-dialogue scores in, recovery, agreement and the eligibility verdict out.

Definitions (also in the README's rollout section):
- mean log-probability = total log-probability of every reference-reply token / number of those tokens
  (token-weighted over the whole golden set, teacher-forced after the dialogue's chat prompt);
- recovery = exp(mean logprob of the variant - mean logprob of the base) = base perplexity / variant
  perplexity: 1.0 means the variant predicts the references exactly as well as the base, 0.9 means its
  perplexity is 1/0.9 = 1.11 times the base's; it may exceed 1;
- agreement = share of positions where the variant's top-1 token equals the base's greedy token, teacher-forced
  along the base's first N greedy tokens (well defined at every position, unlike free-running comparison);
- exact match = share of dialogues whose first N greedily generated tokens are identical for both models.
Eligible when recovery >= threshold and agreement >= min_agreement (0 by default: recovery alone gates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class DialogueScore:
    id: str
    reference_tokens: int
    base_logprob_sum: float
    variant_logprob_sum: float
    agreement_tokens: int
    compared_tokens: int
    exact_match: bool


@dataclass(frozen=True)
class Summary:
    dialogues: int
    reference_tokens: int
    base_mean_logprob: float
    variant_mean_logprob: float
    recovery: float
    agreement: float
    exact_match_rate: float
    threshold: float
    min_agreement: float
    eligible: bool
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: (None if isinstance(v, float) and not math.isfinite(v) else v) for key, v in data.items()}


def summarize(scores: Sequence[DialogueScore], threshold: float, min_agreement: float = 0.0) -> Summary:
    if not scores:
        raise ValueError("no dialogues were scored")
    tokens = sum(s.reference_tokens for s in scores)
    if tokens <= 0:
        raise ValueError("the golden set's references have no tokens")
    base_mean = sum(s.base_logprob_sum for s in scores) / tokens
    variant_mean = sum(s.variant_logprob_sum for s in scores) / tokens
    finite = math.isfinite(base_mean) and math.isfinite(variant_mean)
    recovery = math.exp(min(variant_mean - base_mean, 50.0)) if finite else 0.0
    compared = sum(s.compared_tokens for s in scores)
    agreement = sum(s.agreement_tokens for s in scores) / compared if compared else 0.0
    exact = sum(1 for s in scores if s.exact_match) / len(scores)
    reasons = []
    if not finite:
        reasons.append("the variant's log-probabilities are not finite (NaN or infinite logits)")
    elif recovery < threshold:
        reasons.append(f"recovery {recovery:.3f} < threshold {threshold}")
    if agreement < min_agreement:
        reasons.append(f"greedy agreement {agreement:.3f} < minimum {min_agreement}")
    return Summary(
        dialogues=len(scores),
        reference_tokens=tokens,
        base_mean_logprob=base_mean,
        variant_mean_logprob=variant_mean,
        recovery=recovery,
        agreement=agreement,
        exact_match_rate=exact,
        threshold=threshold,
        min_agreement=min_agreement,
        eligible=not reasons,
        reasons=reasons,
    )

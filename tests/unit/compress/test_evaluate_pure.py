"""Quality gate, pure parts: recovery and agreement arithmetic, the verdict, golden set loading."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from dialogue_runtime.evaluate.golden_set import GoldenSetError, load_golden, parse_golden
from dialogue_runtime.evaluate.job import verdict_dict
from dialogue_runtime.evaluate.scoring import DialogueScore, summarize


def score(ref_tokens: int, base_lp: float, variant_lp: float, agree: int = 8, exact: bool = True) -> DialogueScore:
    return DialogueScore(
        id="d",
        reference_tokens=ref_tokens,
        base_logprob_sum=base_lp,
        variant_logprob_sum=variant_lp,
        agreement_tokens=agree,
        compared_tokens=8,
        exact_match=exact,
    )


def test_recovery_is_the_perplexity_ratio_token_weighted() -> None:
    # 30 tokens in all; the variant loses 0.1 nats per token on average -> recovery exp(-0.1).
    s = summarize([score(10, -10.0, -11.0), score(20, -20.0, -22.0)], threshold=0.9)
    assert s.base_mean_logprob == pytest.approx(-1.0)
    assert s.variant_mean_logprob == pytest.approx(-1.1)
    assert s.recovery == pytest.approx(math.exp(-0.1))
    assert s.eligible


def test_a_collapsed_variant_is_not_eligible_and_the_reason_has_the_numbers() -> None:
    s = summarize([score(10, -10.0, -40.0, agree=1, exact=False)], threshold=0.9)
    assert not s.eligible
    assert s.recovery == pytest.approx(math.exp(-3.0))
    assert s.reasons == [f"recovery {s.recovery:.3f} < threshold 0.9"]
    assert s.agreement == pytest.approx(1 / 8)
    assert s.exact_match_rate == 0.0


def test_agreement_gates_only_when_asked() -> None:
    scores = [score(10, -10.0, -10.0, agree=4)]
    assert summarize(scores, threshold=0.9).eligible
    gated = summarize(scores, threshold=0.9, min_agreement=0.8)
    assert not gated.eligible
    assert gated.reasons == ["greedy agreement 0.500 < minimum 0.8"]


def test_nan_logits_fail_the_gate_and_serialize_as_null() -> None:
    s = summarize([score(10, -10.0, float("nan"))], threshold=0.5)
    assert not s.eligible
    assert "not finite" in s.reasons[0]
    assert verdict_dict(s)["variantMeanLogprob"] is None
    assert verdict_dict(s)["exactMatchRate"] == 1.0


def test_summaries_need_data() -> None:
    with pytest.raises(ValueError, match="no dialogues"):
        summarize([], threshold=0.9)


def test_default_golden_set_has_short_single_and_multi_turn_dialogues() -> None:
    golden = load_golden("default")
    assert 20 <= len(golden) <= 40
    assert len({d.id for d in golden}) == len(golden)
    assert any(len(d.messages) > 1 for d in golden)
    assert all(d.messages[-1][0] == "user" and d.reference for d in golden)
    capital = next(d for d in golden if d.id == "capital-france")
    assert capital.chat() == [{"role": "user", "content": "What is the capital of France?"}]


def test_golden_errors_name_the_line(tmp_path: Path) -> None:
    with pytest.raises(GoldenSetError, match="golden set not found"):
        load_golden(str(tmp_path / "none.jsonl"))
    ok = '{"id": "a", "messages": [{"role": "user", "content": "hi"}], "reference": "hello"}'
    with pytest.raises(GoldenSetError, match="line 2: 'reference'"):
        parse_golden(ok + '\n{"id": "b", "messages": [{"role": "user", "content": "x"}]}', "t")
    with pytest.raises(GoldenSetError, match="duplicate id 'a'"):
        parse_golden(ok + "\n" + ok, "t")
    last_assistant = '{"messages": [{"role": "assistant", "content": "x"}], "reference": "y"}'
    with pytest.raises(GoldenSetError, match="last message must be the user's"):
        parse_golden(last_assistant, "t")


def test_base_results_are_cached_per_base_golden_set_and_token_count(tmp_path: Path) -> None:
    from compress_fakes import fake_model
    from dialogue_runtime.evaluate import base_cache

    base = fake_model(tmp_path / "base")
    golden = load_golden("default")
    key = base_cache.cache_key(base, golden, 8)
    assert key == base_cache.cache_key(base, golden, 8)
    assert key != base_cache.cache_key(base, golden, 16)
    assert key != base_cache.cache_key(base, golden[:5], 8)
    assert key != base_cache.cache_key(fake_model(tmp_path / "other", weights=b"\x03" * 4096), golden, 8)
    results = [base_cache.BaseResult(-1.5, [1, 2, 3]), base_cache.BaseResult(-2.0, [])]
    assert base_cache.load(tmp_path / "cache", key, 2) is None
    base_cache.save(tmp_path / "cache", key, results)
    assert base_cache.load(tmp_path / "cache", key, 2) == results
    assert base_cache.load(tmp_path / "cache", key, 3) is None, "a different golden subset is not reused"

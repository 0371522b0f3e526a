"""Canary analysis: TTFT p95 from histogram windows, sample-size waiting, failure reasons with numbers."""

from __future__ import annotations

import pytest
from dialogue_operator.rollout import AnalysisSpec, VariantMetrics, analyze, histogram_quantile, window
from dialogue_operator.rollout.analysis import Window

BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def metrics(requests: int, errors: int, ttfts_s: list[float]) -> VariantMetrics:
    counts = [sum(1 for t in ttfts_s if t <= b) for b in BOUNDS] + [len(ttfts_s)]
    return VariantMetrics(
        requests=requests, errors=errors, ttft_bucket_bounds_s=BOUNDS, ttft_bucket_counts=tuple(counts)
    )


def win(requests: int, errors: int, ttfts_s: list[float]) -> Window:
    return window(metrics(requests, errors, ttfts_s), None)


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    # 100 observations: 50 in (0, 0.1], 50 in (0.1, 0.5]; p95 rank 95 -> 45/50 into (0.1, 0.5].
    bounds = (0.1, 0.5)
    assert histogram_quantile(0.95, bounds, (50, 100, 100)) == pytest.approx(0.1 + 0.4 * 45 / 50)
    assert histogram_quantile(0.5, bounds, (50, 100, 100)) == pytest.approx(0.1)


def test_quantile_of_no_observations_is_unknown_and_inf_bucket_gives_highest_bound() -> None:
    assert histogram_quantile(0.95, (0.1, 0.5), (0, 0, 0)) is None
    assert histogram_quantile(0.95, (0.1, 0.5), (0, 0, 10)) == 0.5


def test_quantile_rejects_malformed_histograms() -> None:
    with pytest.raises(ValueError, match="bounds but"):
        histogram_quantile(0.95, (0.1, 0.5), (1, 2))
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, (0.1,), (1, 1))


def test_window_subtracts_the_baseline_and_restarts_after_a_counter_reset() -> None:
    before = metrics(100, 2, [0.08] * 98)
    after = metrics(150, 3, [0.08] * 98 + [0.3] * 49)
    w = window(after, before)
    assert (w.requests, w.errors, w.ttft_samples) == (50, 1, 49)
    restarted = metrics(10, 0, [0.2] * 10)  # the gateway restarted: counters went down
    w2 = window(restarted, before)
    assert (w2.requests, w2.errors, w2.ttft_samples) == (10, 0, 10)


def test_too_few_canary_samples_waits_and_never_passes() -> None:
    spec = AnalysisSpec(min_samples=20)
    result, _ = analyze(1, win(19, 0, [0.05] * 19), win(500, 0, [0.05] * 500), None, spec)
    assert result.verdict == "Waiting"
    assert "19 canary requests of 20" in result.reasons[0]


def test_error_rate_above_threshold_fails_with_the_numbers() -> None:
    spec = AnalysisSpec(min_samples=20, max_error_rate=0.05)
    result, _ = analyze(2, win(40, 4, [0.05] * 36), win(400, 0, [0.05] * 400), None, spec)
    assert result.verdict == "Fail"
    assert result.canary_error_rate == pytest.approx(0.1)
    assert "error rate 0.100 (4/40) > maxErrorRate 0.05" in result.reasons[0]


def test_slow_canary_fails_on_ttft_ratio_with_both_p95_values() -> None:
    spec = AnalysisSpec(min_samples=20, max_ttft_p95_ratio=1.5)
    result, reference = analyze(1, win(50, 0, [0.9] * 50), win(500, 0, [0.2] * 500), None, spec)
    assert result.verdict == "Fail"
    assert result.ttft_p95_ratio is not None and result.ttft_p95_ratio > 1.5
    assert "maxTtftP95Ratio 1.5" in result.reasons[0]
    assert reference == result.stable_ttft_p95_s


def test_comparable_canary_passes() -> None:
    spec = AnalysisSpec(min_samples=20)
    result, _ = analyze(1, win(50, 0, [0.2] * 50), win(500, 0, [0.2] * 500), None, spec)
    assert result.verdict == "Pass"
    assert result.ttft_p95_ratio == pytest.approx(1.0)


def test_stable_without_traffic_uses_the_last_reference_and_waits_without_one() -> None:
    spec = AnalysisSpec(min_samples=20)
    canary = win(50, 0, [0.2] * 50)
    no_stable = win(0, 0, [])
    waiting, _ = analyze(4, canary, no_stable, None, spec)
    assert waiting.verdict == "Waiting"
    assert "stable requests" in waiting.reasons[0]
    passed, kept = analyze(4, canary, no_stable, 0.24, spec)
    assert passed.verdict == "Pass"
    assert kept == 0.24

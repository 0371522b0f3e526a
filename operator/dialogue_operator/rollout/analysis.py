"""Canary analysis (pure): per-step windows of cumulative gateway counters, TTFT p95, verdicts with numbers.

Rules (documented for users in the rollout section of the README):
- Samples are the canary's requests since the step started (counter differences; a counter that went down
  means the gateway restarted, and the window restarts from zero).
- Below `minSamples` canary requests the verdict is `Waiting`: never promote on no data.
- `Fail` when the canary's error rate (errors / requests in the window) exceeds `maxErrorRate`, or when its
  TTFT p95 divided by the stable variant's TTFT p95 exceeds `maxTtftP95Ratio`. The stable p95 comes from the
  same window when the stable variant had `minSamples` requests in it, else from the last window where it
  had (at a 100 % step the stable variant gets no traffic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from dialogue_operator.rollout.model import Analysis, AnalysisSpec, VariantMetrics


@dataclass(frozen=True)
class Window:
    """Samples of one variant over the current step."""

    requests: int
    errors: int
    ttft_bucket_bounds_s: tuple[float, ...]
    ttft_bucket_counts: tuple[int, ...]

    @property
    def ttft_samples(self) -> int:
        return self.ttft_bucket_counts[-1] if self.ttft_bucket_counts else 0


def _went_down(current: VariantMetrics, baseline: VariantMetrics) -> bool:
    if current.requests < baseline.requests or current.errors < baseline.errors:
        return True
    if len(current.ttft_bucket_counts) != len(baseline.ttft_bucket_counts):
        return True
    return any(c < b for c, b in zip(current.ttft_bucket_counts, baseline.ttft_bucket_counts, strict=True))


def window(current: VariantMetrics, baseline: VariantMetrics | None) -> Window:
    """Differences since `baseline`; the whole counter when there is none or the counters were reset."""
    if (
        baseline is None
        or _went_down(current, baseline)
        or current.ttft_bucket_bounds_s != baseline.ttft_bucket_bounds_s
    ):
        return Window(current.requests, current.errors, current.ttft_bucket_bounds_s, current.ttft_bucket_counts)
    return Window(
        requests=current.requests - baseline.requests,
        errors=current.errors - baseline.errors,
        ttft_bucket_bounds_s=current.ttft_bucket_bounds_s,
        ttft_bucket_counts=tuple(
            c - b for c, b in zip(current.ttft_bucket_counts, baseline.ttft_bucket_counts, strict=True)
        ),
    )


def histogram_quantile(q: float, bounds_s: tuple[float, ...], cumulative_counts: tuple[int, ...]) -> float | None:
    """Prometheus' `histogram_quantile`: linear interpolation inside the bucket holding rank q * total.

    `cumulative_counts` has one entry per bound plus the +Inf bucket. Returns None without observations;
    a rank in the +Inf bucket yields the highest finite bound (as Prometheus does).
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    if len(cumulative_counts) != len(bounds_s) + 1:
        raise ValueError(f"histogram has {len(bounds_s)} bounds but {len(cumulative_counts)} counts (need bounds + 1)")
    total = cumulative_counts[-1]
    if total <= 0:
        return None
    rank = q * total
    for i, bound in enumerate(bounds_s):
        count = cumulative_counts[i]
        if count >= rank:
            lower = bounds_s[i - 1] if i > 0 else 0.0
            below = cumulative_counts[i - 1] if i > 0 else 0
            in_bucket = count - below
            if in_bucket <= 0:
                return bound
            return lower + (bound - lower) * (rank - below) / in_bucket
    return bounds_s[-1] if bounds_s else math.inf


def ttft_p95_s(w: Window) -> float | None:
    if w.ttft_samples <= 0:
        return None
    return histogram_quantile(0.95, w.ttft_bucket_bounds_s, w.ttft_bucket_counts)


def analyze(
    step: int,
    canary: Window,
    stable: Window | None,
    stable_reference_p95_s: float | None,
    spec: AnalysisSpec,
) -> tuple[Analysis, float | None]:
    """Judges the canary's window; returns the analysis and the stable p95 reference to keep."""
    reference = stable_reference_p95_s
    stable_p95: float | None = None
    if stable is not None and stable.requests >= spec.min_samples:
        stable_p95 = ttft_p95_s(stable)
        if stable_p95 is not None:
            reference = stable_p95
    else:
        stable_p95 = reference
    if canary.requests < spec.min_samples:
        why = f"{canary.requests} canary requests of {spec.min_samples} needed"
        return _analysis(step, "Waiting", canary, None, None, stable_p95, (why,)), reference
    error_rate = canary.errors / canary.requests
    canary_p95 = ttft_p95_s(canary)
    failures: list[str] = []
    if error_rate > spec.max_error_rate:
        failures.append(
            f"error rate {error_rate:.3f} ({canary.errors}/{canary.requests}) > maxErrorRate {spec.max_error_rate}"
        )
    if canary_p95 is not None and stable_p95:
        ratio = canary_p95 / stable_p95
        if ratio > spec.max_ttft_p95_ratio:
            failures.append(
                f"TTFT p95 {canary_p95:.3f} s / stable {stable_p95:.3f} s = {ratio:.2f} > maxTtftP95Ratio "
                f"{spec.max_ttft_p95_ratio}"
            )
    if failures:
        return _analysis(step, "Fail", canary, error_rate, canary_p95, stable_p95, tuple(failures)), reference
    if canary_p95 is None or not stable_p95:
        # The error rate is fine but latency cannot be compared yet: never promote without the comparison.
        missing = "canary TTFT samples" if canary_p95 is None else f"{spec.min_samples} stable requests"
        why = f"TTFT p95 not comparable yet: need {missing}"
        return _analysis(step, "Waiting", canary, error_rate, canary_p95, stable_p95, (why,)), reference
    return _analysis(step, "Pass", canary, error_rate, canary_p95, stable_p95, ()), reference


def _analysis(  # noqa: PLR0917 - private constructor of one record, called with all its fields
    step: int,
    verdict: Literal["Pass", "Fail", "Waiting"],
    canary: Window,
    error_rate: float | None,
    canary_p95_s: float | None,
    stable_p95_s: float | None,
    reasons: tuple[str, ...],
) -> Analysis:
    ratio = canary_p95_s / stable_p95_s if canary_p95_s is not None and stable_p95_s else None
    return Analysis(
        step=step,
        verdict=verdict,
        canary_requests=canary.requests,
        canary_errors=canary.errors,
        canary_error_rate=error_rate,
        canary_ttft_p95_s=canary_p95_s,
        stable_ttft_p95_s=stable_p95_s,
        ttft_p95_ratio=ratio,
        reasons=reasons,
    )

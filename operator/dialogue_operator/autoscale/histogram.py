"""Quantiles of Prometheus cumulative histograms and their change between two scrapes (pure functions)."""

from __future__ import annotations

import math
from collections.abc import Mapping

Histogram = Mapping[float, float]
"""Cumulative bucket counts keyed by upper bound (`le`); `math.inf` is the `+Inf` bucket."""


def delta(current: Histogram, previous: Histogram | None) -> dict[float, float]:
    """Observations between two scrapes of the same pod; a counter reset (pod restart) yields `current` itself."""
    if previous is None:
        return dict(current)
    out = {le: count - previous.get(le, 0.0) for le, count in current.items()}
    if any(v < 0 for v in out.values()):
        return dict(current)
    return out


def merge(histograms: list[Histogram]) -> dict[float, float]:
    """Sum histograms with the same bucket bounds (several pods)."""
    out: dict[float, float] = {}
    for hist in histograms:
        for le, count in hist.items():
            out[le] = out.get(le, 0.0) + count
    return out


def quantile(hist: Histogram, q: float) -> float | None:
    """The q-quantile like PromQL's `histogram_quantile` (linear inside a bucket); None when empty.

    When the quantile falls into the `+Inf` bucket the largest finite bound is returned, as PromQL does.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q must be in [0, 1], got {q}")
    bounds = sorted(hist)
    if not bounds:
        return None
    total = hist[bounds[-1]] if math.isinf(bounds[-1]) else max(hist.values())
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le in bounds:
        count = hist[le]
        if count >= rank:
            if math.isinf(le):
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else None
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return bounds[-1]

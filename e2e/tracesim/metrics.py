"""What a simulation measured: per-request records and the summary a benchmark reports."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class RequestRecord:
    """One trace request's fate; `ttft_s` counts from arrival at the gateway (holding included)."""

    arrival_s: float
    submit_s: float | None = None
    ttft_s: float | None = None
    rejected: bool = False


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]); inf for failed requests sorts last; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


@dataclass(frozen=True)
class SimResult:
    """Summary of one replay: SLO attainment, failures, cost, churn."""

    policy: str
    requests: int
    minutes_with_requests: int
    minutes_in_slo: int
    failed: int
    held_too_long: int
    replica_hours: float
    scale_events: int
    ttft_p95_s: float
    ttft_p99_s: float
    peak_replicas: int
    violated_minutes: tuple[int, ...]
    replicas_at_minute_start: tuple[int, ...] = ()  # replicas (starting, Ready, draining) at each minute's first tick

    @property
    def slo_attainment(self) -> float:
        return self.minutes_in_slo / self.minutes_with_requests if self.minutes_with_requests else 1.0

    @classmethod
    def build(
        cls,
        *,
        policy: str,
        records: list[RequestRecord],
        gpu_seconds: float,
        scale_events: int,
        ttft_target_s: float,
        held_too_long_s: float,
        timeline: list[tuple[float, int]],
    ) -> SimResult:
        by_minute: dict[int, list[float]] = {}
        failed = held_long = 0
        ttfts: list[float] = []
        for rec in records:
            ttft = math.inf if rec.rejected or rec.ttft_s is None else rec.ttft_s
            failed += math.isinf(ttft)
            held_s = math.inf if rec.submit_s is None else rec.submit_s - rec.arrival_s
            held_long += held_s > held_too_long_s
            by_minute.setdefault(int(rec.arrival_s // 60), []).append(ttft)
            ttfts.append(ttft)
        violated = tuple(sorted(m for m, v in by_minute.items() if percentile(v, 0.95) > ttft_target_s))
        return cls(
            policy=policy,
            requests=len(records),
            minutes_with_requests=len(by_minute),
            minutes_in_slo=len(by_minute) - len(violated),
            failed=failed,
            held_too_long=held_long,
            replica_hours=gpu_seconds / 3600.0,
            scale_events=scale_events,
            ttft_p95_s=percentile(ttfts, 0.95),
            ttft_p99_s=percentile(ttfts, 0.99),
            peak_replicas=max((n for _, n in timeline), default=0),
            violated_minutes=violated,
            replicas_at_minute_start=_at_minute_starts(timeline),
        )


def _at_minute_starts(timeline: list[tuple[float, int]]) -> tuple[int, ...]:
    firsts: dict[int, int] = {}
    for t, n in timeline:
        firsts.setdefault(int(t // 60), n)
    last = max(firsts, default=-1)
    out, held = [], 0
    for m in range(last + 1):
        held = firsts.get(m, held)
        out.append(held)
    return tuple(out)

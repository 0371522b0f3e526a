"""Calibration of one replica on a trace's request mix: the rate and in-flight count it sustains within an SLO."""

from __future__ import annotations

import random
from dataclasses import dataclass

from dialogue_runtime.engine.config import SimProfile
from dialogue_runtime.sim.model import EngineModel, SimRequest

from e2e.tracesim.metrics import percentile
from e2e.tracesim.trace import TraceRequest


@dataclass(frozen=True)
class Capacity:
    """What one replica sustains on this mix with TTFT p95 at `ttft_p95_s` (<= the goal asked for)."""

    rate_rps: float
    mean_in_flight: float
    ttft_p95_s: float


def steady_state(
    mix: list[TraceRequest], profile: SimProfile, rate_rps: float, requests: int = 800, seed: int = 7
) -> tuple[float, float]:
    """(TTFT p95, mean in-flight) of one replica fed Poisson arrivals drawn from `mix` at `rate_rps`."""
    rnd = random.Random(seed)
    engine = EngineModel(profile, token_events=False)
    now, ttfts, in_flight = 0.0, [], []
    warmup = requests // 5
    for i in range(requests):
        now += rnd.expovariate(rate_rps)
        for ev in engine.advance(now):
            if ev.kind == "first_token" and ev.ttft_s is not None and int(ev.request_id) >= warmup:
                ttfts.append(ev.ttft_s)
        pick = rnd.choice(mix)
        engine.submit(SimRequest(str(i), pick.prompt_tokens, pick.output_tokens), now)
        if i >= warmup:
            in_flight.append(engine.num_running + engine.num_waiting)
    while (t := engine.next_event_s()) is not None:
        for ev in engine.advance(t):
            if ev.kind == "first_token" and ev.ttft_s is not None and int(ev.request_id) >= warmup:
                ttfts.append(ev.ttft_s)
    return percentile(ttfts, 0.95), sum(in_flight) / max(1, len(in_flight))


def calibrate(mix: list[TraceRequest], profile: SimProfile, ttft_goal_s: float, steps: int = 9) -> Capacity:
    """Bisect the per-replica arrival rate whose steady-state TTFT p95 stays within `ttft_goal_s`."""
    low, high = 0.01, 10.0
    best = Capacity(low, 0.0, 0.0)
    for _ in range(steps):
        mid = (low * high) ** 0.5
        p95, in_flight = steady_state(mix, profile, mid)
        if p95 <= ttft_goal_s:
            low, best = mid, Capacity(mid, in_flight, p95)
        else:
            high = mid
    return best

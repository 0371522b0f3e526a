"""A causal reference: a plan that knows, in hindsight, exactly what every finished minute needed, but not the future.

The searched oracle (`e2e.tracesim.oracle`) knows each minute's load before it comes; no autoscaler can. This
reference asks what that foresight is worth. For every minute it computes the minute's exact need with the
simulator (the fewest replicas that, Ready from `lookback_min` minutes before and never changed, keep that
minute in SLO), and plans each minute from the needs of minutes already seen when the decision must be made:
the largest need of the last `hold_min` of them, plus a `margin`. The decision for minute m is made one cold
start (plus a tick) before m starts, while minute m - 2 is still in progress (for cold starts under 110 s); the
follower is given that minute's whole need anyway, the last seconds included, so it is slightly generous.
A grid of hold and margin settings is replayed; the cheapest one reaching the SLO goal (else the best
attainment) is the reference. Exact per-minute needs are knowledge no real policy has, so an autoscaler doing as
well as the best follower setting does as well as hindsight about the past allows.
"""

from __future__ import annotations

import math

from e2e.tracesim.oracle import ORACLE_TICK_S, fewest_replicas
from e2e.tracesim.policies import OraclePolicy
from e2e.tracesim.sim import SimConfig, Simulation
from e2e.tracesim.sweep import SweepPoint
from e2e.tracesim.trace import TraceRequest

FOLLOWER = "hindsight follower"
HOLDS_MIN = (1, 2, 3, 5, 10, 15)
MARGINS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def minute_needs(trace: list[TraceRequest], config: SimConfig, max_replicas: int, lookback_min: int = 2) -> list[int]:
    """Per minute of `trace`: the fewest replicas (at most `max_replicas`) that, Ready from `lookback_min`
    minutes before it (so the backlog those minutes leave counts) and never changed, keep it in SLO; 0 for a
    minute without requests."""
    if not trace:
        return []
    minutes = int(trace[-1].arrival_s // 60) + 1
    needs = []
    for m in range(minutes):
        start_s = max(0, m - lookback_min) * 60.0
        cut = [
            TraceRequest(r.arrival_s - start_s, r.prompt_tokens, r.output_tokens)
            for r in trace
            if start_s <= r.arrival_s < (m + 1) * 60
        ]
        judged = m - int(start_s // 60)
        if not any(int(r.arrival_s // 60) == judged for r in cut):
            needs.append(0)
        else:
            needs.append(fewest_replicas(cut, config, judged, max_replicas) or max_replicas)
    return needs


def seen_lag_min(cold_start_s: float) -> int:
    """How many minutes before minute m the minute in progress is when m's replicas must be asked for."""
    lead_s = cold_start_s + ORACLE_TICK_S
    return max(1, math.ceil(lead_s / 60.0))


def follower_plan(needs: list[int], *, lag_min: int, hold_min: int, margin: float, initial: int) -> list[int]:
    """Minute m gets the largest need of minutes m - lag_min - hold_min + 1 .. m - lag_min, times 1 + margin
    (rounded up, at least 1); minutes before any is seen keep `initial` (the replicas every policy starts with)."""
    if lag_min < 1 or hold_min < 1 or margin < 0:
        raise ValueError(f"need lag_min >= 1, hold_min >= 1, margin >= 0; got {lag_min}, {hold_min}, {margin}")
    plan = []
    for m in range(len(needs)):
        last = m - lag_min
        if last < 0:
            plan.append(max(1, initial))
            continue
        seen = needs[max(0, last - hold_min + 1) : last + 1]
        plan.append(max(1, math.ceil(max(seen) * (1 + margin) - 1e-9)))
    return plan


def hold_label(hold_min: int) -> str:
    """How a follower setting names its hold (every setting of that hold starts with it)."""
    return f"largest need of the last {hold_min} seen minute{'s' if hold_min > 1 else ''}"


def follower_points(
    trace: list[TraceRequest],
    config: SimConfig,
    needs: list[int],
    holds_min: tuple[int, ...] = HOLDS_MIN,
    margins: tuple[float, ...] = MARGINS,
) -> list[SweepPoint]:
    """The follower replayed at every (hold, margin) of the grid, on the cluster `config` describes."""
    lag = seen_lag_min(config.cold_start_s)
    points = []
    for hold in holds_min:
        for margin in margins:
            plan = follower_plan(needs, lag_min=lag, hold_min=hold, margin=margin, initial=config.initial_replicas)
            policy = OraclePolicy(plan, config.cold_start_s, name=FOLLOWER)
            setting = f"{hold_label(hold)} +{margin:.0%}"
            points.append(SweepPoint(FOLLOWER, setting, Simulation(trace, policy, config).run()))
    return points

"""Hindsight oracle: searches, with the simulator itself, for the cheapest per-minute replica plan meeting the SLO.

A plan gives each minute of the trace a replica count, provisioned one cold start ahead (`OraclePolicy`). The
search knows the whole trace:

1. **Feasibility.** The trace is replayed with `max_replicas` planned for every minute; a minute still out of
   SLO then is out of reach for any plan (the shared starting replicas cannot absorb it before a cold start
   ends, or its requests alone exceed the SLO) and is reported as infeasible, never silently dropped.
2. **Raise.** From a starting plan (the heuristic one), every feasible minute out of SLO gets a quarter more
   replicas (a minute already at the maximum raises the one before it) until all feasible minutes pass; if
   that does not converge, the all-maximum plan is used (feasible by definition).
3. **Lower.** Minute by minute, in time order, the smallest count (binary search) whose replay still keeps
   every feasible minute from a little before it to `window_min` minutes after it in SLO. Each try forks the
   replay at the last moment the minute's count cannot yet matter, so a try costs a few simulated minutes.
4. **Verify and repair.** The final plan is replayed in full; a feasible minute out of SLO (a backlog longer
   than the window) raises its count again until the full replay passes.

It is a greedy local search over per-minute counts with a 10 s decision tick, not a proof of optimality: a
finer plan could be cheaper still. The same simulator, cold start and starting replicas as every policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from dialogue_operator.autoscale import Observation

from e2e.tracesim.metrics import SimResult, percentile
from e2e.tracesim.policies import OraclePolicy
from e2e.tracesim.sim import SimConfig, Simulation
from e2e.tracesim.trace import TraceRequest

ORACLE_TICK_S = 10.0


@dataclass(frozen=True)
class OracleSearch:
    """The plan found, its full replay, the minutes no plan can keep in SLO, and how many replays it took."""

    plan: tuple[int, ...]
    result: SimResult
    infeasible_minutes: tuple[int, ...]
    replays: int


class _Search:
    def __init__(
        self, trace: list[TraceRequest], config: SimConfig, max_replicas: int, min_replicas: int, name: str
    ) -> None:
        self.trace, self.config, self.name = trace, config, name
        self.max_replicas, self.min_replicas = max_replicas, min_replicas
        self.minutes = int(trace[-1].arrival_s // 60) + 1 if trace else 0
        self.lead_s = config.cold_start_s + ORACLE_TICK_S
        self.by_minute: dict[int, list[int]] = {}
        for i, r in enumerate(trace):
            self.by_minute.setdefault(int(r.arrival_s // 60), []).append(i)
        self.replays = 0
        self.infeasible: set[int] = set()

    def policy(self, plan: list[int]) -> OraclePolicy:
        return OraclePolicy(plan, self.config.cold_start_s, self.min_replicas, name=self.name)

    def full(self, plan: list[int]) -> SimResult:
        self.replays += 1
        return Simulation(self.trace, self.policy(plan), self.config).run()

    def raise_failing(self, plan: list[int], failing: list[int]) -> bool:
        """Add capacity for each failing minute; False when nothing could be raised."""
        raised = False
        for m in failing:
            j = m
            while j >= 0 and plan[j] >= self.max_replicas:
                j -= 1
            if j >= 0:
                plan[j] = min(self.max_replicas, plan[j] + max(1, math.ceil(plan[j] / 4)))
                raised = True
        return raised

    def passes(self, sim: Simulation, minutes: range, infeasible: set[int]) -> bool:
        """Every feasible minute in `minutes` has TTFT p95 within target (a request not yet served counts as late)."""
        for m in minutes:
            if m in infeasible or m not in self.by_minute:
                continue
            ttfts = []
            for i in self.by_minute[m]:
                rec = sim.records[i]
                ttfts.append(math.inf if rec.rejected or rec.ttft_s is None else rec.ttft_s)
            if percentile(ttfts, 0.95) > self.config.ttft_target_s:
                return False
        return True

    def tries(self, base: Simulation, plan: list[int], m: int, count: int, *, check: range, until_s: float) -> bool:
        trial = list(plan)
        trial[m] = count
        twin = base.fork(self.policy(trial))
        self.replays += 1
        twin.run_until(until_s)
        return self.passes(twin, check, self.infeasible)

    def lower(self, plan: list[int], window_min: int, near_optimal: bool) -> None:
        base = Simulation(self.trace, self.policy(plan), self.config)  # follows `plan` as it is lowered in place
        for m in range(self.minutes):
            # The first tick whose look-ahead reaches minute m: before it, plan[m] has no effect.
            first_tick_s = max(0.0, math.ceil((m * 60 - self.lead_s) / ORACLE_TICK_S) * ORACLE_TICK_S)
            base.run_until(first_tick_s - 1e-6)
            check = range(max(0, int(first_tick_s // 60) - 1), min(self.minutes, m + window_min + 1))
            until_s = (m + window_min + 1) * 60 + self.config.ttft_target_s + 1.0
            low, high = self.min_replicas, plan[m]
            if near_optimal and low < high and not self.tries(base, plan, m, high - 1, check=check, until_s=until_s):
                continue  # a plan that was tight already: one replay shows this minute cannot lose a replica
            while low < high:
                mid = (low + high) // 2
                if self.tries(base, plan, m, mid, check=check, until_s=until_s):
                    high = mid
                else:
                    low = mid + 1
            plan[m] = high


def search_oracle(
    trace: list[TraceRequest],
    config: SimConfig,
    start_plan: list[int],
    *,
    max_replicas: int,
    min_replicas: int = 1,
    window_min: int = 3,
    max_rounds: int = 40,
    near_optimal: bool = False,
    name: str = "oracle (search)",
) -> OracleSearch:
    """The cheapest plan the greedy search finds under which every feasible minute of `trace` meets the SLO.

    `near_optimal`: `start_plan` is already tight (say, the plan found for another cold start), so each minute
    first tries one replica less and stops there if that fails (about one replay per minute instead of a
    binary search)."""
    s = _Search(trace, config, max_replicas, min_replicas, name)
    if not trace:
        return OracleSearch((), s.full([]), (), s.replays)
    infeasible = s.infeasible = set(s.full([max_replicas] * s.minutes).violated_minutes)
    plan = [min(max_replicas, max(min_replicas, start_plan[m] if m < len(start_plan) else 0)) for m in range(s.minutes)]
    for _ in range(max_rounds):
        failing = [m for m in s.full(plan).violated_minutes if m not in infeasible]
        if not failing:
            break
        if not s.raise_failing(plan, failing):
            plan = [max_replicas] * s.minutes
            break
    else:
        plan = [max_replicas] * s.minutes
    s.lower(plan, window_min, near_optimal)
    for _ in range(max_rounds):
        result = s.full(plan)
        failing = [m for m in result.violated_minutes if m not in infeasible]
        if not failing:
            return OracleSearch(tuple(plan), result, tuple(sorted(infeasible)), s.replays)
        if not s.raise_failing(plan, failing):
            break
    plan = [max_replicas] * s.minutes
    return OracleSearch(tuple(plan), s.full(plan), tuple(sorted(infeasible)), s.replays)


class Fleet:
    """A fixed number of replicas, all Ready from the start."""

    def __init__(self, replicas: int) -> None:
        self.name, self.interval_s, self.replicas = "fixed fleet", ORACLE_TICK_S, replicas

    def decide(self, obs: Observation, now_s: float) -> tuple[int, str]:
        return self.replicas, "fixed"


def fewest_replicas(trace: list[TraceRequest], config: SimConfig, minute: int, max_replicas: int) -> int | None:
    """The fewest replicas that, Ready from the start of `trace` and never changed, keep `minute` in SLO
    (None: not even `max_replicas`)."""

    def ok(k: int) -> bool:
        sim = Simulation(trace, Fleet(k), replace(config, initial_replicas=k))
        return minute not in sim.run().violated_minutes

    if not ok(max_replicas):
        return None
    low, high = 1, max_replicas
    while low < high:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid + 1
    return high


def fleet_needed(trace: list[TraceRequest], config: SimConfig, minute: int, max_replicas: int) -> int | None:
    """The fewest replicas that, Ready from the trace start and never changed, keep `minute` in SLO (None: not
    even `max_replicas`). For a burst after idle minutes this is what must already be on hand when it starts:
    replicas asked for at its first request are Ready a cold start later."""
    return fewest_replicas([r for r in trace if r.arrival_s < (minute + 1) * 60], config, minute, max_replicas)


def best_fixed_fleet(trace: list[TraceRequest], config: SimConfig, goal: float, max_replicas: int) -> SimResult:
    """A hindsight reference without any scaling: the fewest replicas that, Ready from the start and never
    changed, keep at least `goal` of the minutes in SLO (else `max_replicas`'s result). Its replay, renamed
    'fixed fleet (N replicas)'."""

    def run(k: int) -> SimResult:
        return Simulation(trace, Fleet(k), replace(config, initial_replicas=k)).run()

    low, high = 1, max_replicas
    best = run(high)
    while low < high:
        mid = (low + high) // 2
        result = run(mid)
        if result.slo_attainment >= goal:
            high, best = mid, result
        else:
            low = mid + 1
    return replace(best, policy=f"fixed fleet ({high} replicas)")

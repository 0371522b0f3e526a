"""Side-by-side replays of one trace under every policy, with one shared setup (used by the bench and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dialogue_operator.autoscale import PolicyConfig
from dialogue_runtime.engine.config import SimProfile

from e2e.tracesim.capacity import Capacity, calibrate
from e2e.tracesim.metrics import SimResult
from e2e.tracesim.oracle import OracleSearch, search_oracle
from e2e.tracesim.policies import HpaKedaPolicy, KubeAIPolicy, OraclePolicy, OursPolicy, needed_replicas_per_minute
from e2e.tracesim.sim import SimConfig, SimPolicy, Simulation
from e2e.tracesim.trace import TraceRequest


@dataclass(frozen=True)
class Setup:
    """The SLO, cluster and per-replica target every policy in a comparison shares."""

    slo_ttft_p95_s: float = 5.0
    calibration_share: float = 0.6  # per-replica target: load with steady-state TTFT p95 <= this share of the SLO
    cold_start_s: float = 60.0
    max_replicas: int = 64
    held_too_long_s: float = 120.0
    hpa_waiting_threshold: float = 5.0
    profile: SimProfile = field(default_factory=SimProfile)


HEURISTIC_ORACLE = "oracle (heuristic)"
SEARCHED_ORACLE = "oracle (search)"
CANCELS_STARTING = "ours, cancels starting replicas (older)"
GUARD_ON_TICK = "ours, steady TTFT guard on 10 s p95 (previous)"


def policies(setup: Setup, target_in_flight: float, need: list[int]) -> list[SimPolicy]:
    """Ours, ours with flat scale-down windows (the former 600 s one and a short 180 s one, to show the
    trade-off of the decaying peak), ours keeping TTFT-guard replicas even on steady traffic (an earlier
    behaviour), ours cancelling replicas still starting and with the full guard step on steady traffic (an older
    default), ours judging its TTFT guard on the last tick's p95 on steady traffic too (the previous default),
    KubeAI, HPA/KEDA, the heuristic oracle (the searched one is added by `replay_all`)."""
    ours = PolicyConfig(
        min_replicas=1,
        max_replicas=setup.max_replicas,
        target_in_flight_per_replica=target_in_flight,
        ttft_p95_target_s=0.8 * setup.slo_ttft_p95_s,
    )
    return [
        OursPolicy(ours),
        OursPolicy(replace(ours, scale_down_floor_ratio=1.0), name="ours, flat 600 s down-window"),
        OursPolicy(
            replace(ours, scale_down_stabilization_s=180.0, scale_down_floor_ratio=1.0), name="ours, flat 180 s"
        ),
        OursPolicy(replace(ours, burst_memory_s=None), name="ours, guard replicas always kept"),
        OursPolicy(
            replace(
                ours,
                starting_hold_s=None,
                steady_ttft_guard_step_ratio=ours.ttft_guard_step_ratio,
                steady_ttft_guard_on_minute=False,
            ),
            name=CANCELS_STARTING,
        ),
        OursPolicy(replace(ours, steady_ttft_guard_on_minute=False), name=GUARD_ON_TICK),
        KubeAIPolicy(1, setup.max_replicas, target_requests=target_in_flight),
        HpaKedaPolicy(1, setup.max_replicas, waiting_threshold=setup.hpa_waiting_threshold),
        OraclePolicy(need, cold_start_s=setup.cold_start_s, name=HEURISTIC_ORACLE),
    ]


def sim_config(setup: Setup, need: list[int]) -> SimConfig:
    """The cluster every policy of one comparison shares (all start with the first minute's heuristic need)."""
    return SimConfig(
        profile=setup.profile,
        cold_start_s=setup.cold_start_s,
        initial_replicas=need[0] if need else 1,
        ttft_target_s=setup.slo_ttft_p95_s,
        held_too_long_s=setup.held_too_long_s,
    )


@dataclass(frozen=True)
class Comparison:
    """One trace under every policy. `results[-1]` is the reference oracle: the searched one when `search`
    ran (then `search` holds its plan and the infeasible minutes), else the heuristic one."""

    results: list[SimResult]
    search: OracleSearch | None
    need: list[int]
    capacity: Capacity

    @property
    def infeasible_minutes(self) -> tuple[int, ...]:
        return self.search.infeasible_minutes if self.search else ()

    def by_name(self, name: str) -> SimResult:
        return next(r for r in self.results if r.policy == name)


def replay_all(
    trace: list[TraceRequest],
    setup: Setup,
    capacity: Capacity | None = None,
    *,
    search: bool = True,
    start_plan: list[int] | None = None,
) -> Comparison:
    """Every policy on `trace`, then (with `search`) the hindsight-searched oracle, started from `start_plan`
    (a tight plan, e.g. found for another cold start) or else from the heuristic need. Calibrates on the
    trace's mix unless given a capacity."""
    if capacity is None:
        capacity = calibrate(trace, setup.profile, setup.calibration_share * setup.slo_ttft_p95_s)
    need = needed_replicas_per_minute([r.arrival_s for r in trace], capacity.rate_rps)
    config = sim_config(setup, need)
    results = [Simulation(trace, p, config).run() for p in policies(setup, capacity.mean_in_flight, need)]
    found = None
    if search and trace:
        found = search_oracle(
            trace,
            config,
            start_plan or need,
            max_replicas=setup.max_replicas,
            near_optimal=start_plan is not None,
            name=SEARCHED_ORACLE,
        )
        results.append(found.result)
    return Comparison(results, found, need, capacity)


TABLE_HEADER = (
    "| policy | minutes in SLO | in SLO, feasible minutes only | failed | held | replica-hours | vs oracle | "
    "vs heuristic oracle | scale events | TTFT p95 (s) | peak replicas |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def feasible_attainment(r: SimResult, infeasible: tuple[int, ...]) -> tuple[int, int]:
    """(minutes in SLO, minutes with requests) counting only the minutes some plan can keep in SLO."""
    missed = len(set(r.violated_minutes) - set(infeasible))
    total = r.minutes_with_requests - len(infeasible)
    return total - missed, total


def table_row(r: SimResult, oracle: SimResult, heuristic: SimResult, infeasible: tuple[int, ...] = ()) -> str:
    ok, total = feasible_attainment(r, infeasible)
    share = ok / total if total else 1.0
    return (
        f"| {r.policy} | {r.minutes_in_slo}/{r.minutes_with_requests} ({r.slo_attainment:.1%}) | "
        f"{ok}/{total} ({share:.1%}) | {r.failed} | {r.held_too_long} | {r.replica_hours:.2f} | "
        f"{r.replica_hours / oracle.replica_hours:.2f}x | {r.replica_hours / heuristic.replica_hours:.2f}x | "
        f"{r.scale_events} | {r.ttft_p95_s:.2f} | {r.peak_replicas} |"
    )


def table(comparison: Comparison) -> str:
    """A Markdown table of one comparison; ratios against the reference oracle (last row) and the heuristic."""
    rs = comparison.results
    heuristic = comparison.by_name(HEURISTIC_ORACLE)
    rows = (table_row(r, rs[-1], heuristic, comparison.infeasible_minutes) for r in rs)
    return "\n".join([TABLE_HEADER, *rows])

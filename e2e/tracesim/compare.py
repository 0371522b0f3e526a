"""Side-by-side replays of one trace under every policy, with one shared setup (used by the bench and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dialogue_operator.autoscale import PolicyConfig
from dialogue_runtime.engine.config import SimProfile

from e2e.tracesim.capacity import Capacity, calibrate
from e2e.tracesim.metrics import SimResult
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


def policies(setup: Setup, target_in_flight: float, need: list[int]) -> list[SimPolicy]:
    """Ours, ours with flat scale-down windows (the former 600 s one and a short 180 s one, to show the
    trade-off of the decaying peak), KubeAI, HPA/KEDA, the oracle."""
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
        KubeAIPolicy(1, setup.max_replicas, target_requests=target_in_flight),
        HpaKedaPolicy(1, setup.max_replicas, waiting_threshold=setup.hpa_waiting_threshold),
        OraclePolicy(need, cold_start_s=setup.cold_start_s),
    ]


def replay_all(trace: list[TraceRequest], setup: Setup, capacity: Capacity | None = None) -> list[SimResult]:
    """Every policy on `trace`; the oracle's result is last. Calibrates on the trace's mix unless given."""
    if capacity is None:
        capacity = calibrate(trace, setup.profile, setup.calibration_share * setup.slo_ttft_p95_s)
    need = needed_replicas_per_minute([r.arrival_s for r in trace], capacity.rate_rps)
    config = SimConfig(
        profile=setup.profile,
        cold_start_s=setup.cold_start_s,
        initial_replicas=need[0] if need else 1,
        ttft_target_s=setup.slo_ttft_p95_s,
        held_too_long_s=setup.held_too_long_s,
    )
    return [Simulation(trace, p, config).run() for p in policies(setup, capacity.mean_in_flight, need)]


TABLE_HEADER = (
    "| policy | minutes in SLO | failed | held | replica-hours | vs oracle | scale events | TTFT p95 (s) | "
    "peak replicas |\n|---|---|---|---|---|---|---|---|---|"
)


def table_row(r: SimResult, oracle: SimResult) -> str:
    return (
        f"| {r.policy} | {r.minutes_in_slo}/{r.minutes_with_requests} ({r.slo_attainment:.1%}) | {r.failed} | "
        f"{r.held_too_long} | {r.replica_hours:.2f} | {r.replica_hours / oracle.replica_hours:.2f}x | "
        f"{r.scale_events} | {r.ttft_p95_s:.2f} | {r.peak_replicas} |"
    )


def table(results: list[SimResult]) -> str:
    """A Markdown table of one comparison (the oracle last)."""
    return "\n".join([TABLE_HEADER, *(table_row(r, results[-1]) for r in results)])

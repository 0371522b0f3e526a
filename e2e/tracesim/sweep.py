"""Peer settings sweeps: each peer's main knob varied on one trace, to compare replica cost at equal SLO attainment.

The peers' default settings are cheap on bursty traces because they miss the SLO; a fair comparison asks what
each peer costs at the attainment goal, or the best attainment any of its settings reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

from e2e.tracesim.compare import Setup, sim_config
from e2e.tracesim.metrics import SimResult
from e2e.tracesim.policies import HpaKedaPolicy, KubeAIPolicy
from e2e.tracesim.sim import SimPolicy, Simulation
from e2e.tracesim.trace import TraceRequest

# KubeAI's `targetRequests` as multiples of the calibrated per-replica in-flight target (1.0 = its default here).
KUBEAI_TARGET_FACTORS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
# HPA/KEDA: the `num_requests_waiting` AverageValue threshold per pod, and the scale-up policy
# (pods, percent, period s; selectPolicy Max): the issue's +1 pod / 60 s and Kubernetes' default.
HPA_THRESHOLDS = (0.5, 1.0, 2.0, 5.0, 10.0)
HPA_SCALE_UPS = ((1, 0.0, 60.0), (4, 100.0, 15.0))


@dataclass(frozen=True)
class SweepPoint:
    """One peer setting and its replay."""

    peer: str
    setting: str
    result: SimResult


def sweep_policies(setup: Setup, target_in_flight: float) -> list[tuple[str, str, SimPolicy]]:
    """(peer, setting, policy) for every point of the sweep."""
    out: list[tuple[str, str, SimPolicy]] = []
    for factor in KUBEAI_TARGET_FACTORS:
        target = target_in_flight * factor
        setting = f"targetRequests {target:.2f} ({factor:g}x the calibrated target)"
        out.append(("kubeai", setting, KubeAIPolicy(1, setup.max_replicas, target_requests=target)))
    for threshold in HPA_THRESHOLDS:
        for pods, percent, period_s in HPA_SCALE_UPS:
            up = f"+{pods} pod{'s' if pods > 1 else ''}" + (f" or +{percent:g} %" if percent else "")
            setting = f"waiting threshold {threshold:g}, scale-up {up} per {period_s:g} s"
            policy = HpaKedaPolicy(
                1, setup.max_replicas, threshold, up_pods=pods, up_percent=percent, up_period_s=period_s
            )
            out.append(("hpa-keda", setting, policy))
    return out


def sweep(trace: list[TraceRequest], setup: Setup, target_in_flight: float, need: list[int]) -> list[SweepPoint]:
    """Replays `trace` under every sweep setting, on the same cluster as the main comparison."""
    config = sim_config(setup, need)
    return [
        SweepPoint(peer, setting, Simulation(trace, policy, config).run())
        for peer, setting, policy in sweep_policies(setup, target_in_flight)
    ]


def best_setting(points: list[SweepPoint], peer: str, goal: float) -> tuple[SweepPoint, bool]:
    """The cheapest setting of `peer` reaching `goal` attainment (True), else the one with the best attainment
    (the cheaper on ties; False)."""
    mine = [p for p in points if p.peer == peer]
    if not mine:
        raise ValueError(f"no sweep points for peer {peer!r}")
    reaching = [p for p in mine if p.result.slo_attainment >= goal]
    if reaching:
        return min(reaching, key=lambda p: p.result.replica_hours), True
    return max(mine, key=lambda p: (p.result.slo_attainment, -p.result.replica_hours)), False

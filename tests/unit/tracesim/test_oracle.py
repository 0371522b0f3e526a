"""The hindsight oracle search, resumable replays and the peer sweep: what the benchmark's reference rests on."""

from __future__ import annotations

from dataclasses import replace

import pytest

from e2e.tracesim.capacity import Capacity
from e2e.tracesim.compare import HEURISTIC_ORACLE, SEARCHED_ORACLE, Setup, feasible_attainment, replay_all, table
from e2e.tracesim.metrics import SimResult
from e2e.tracesim.oracle import Fleet, best_fixed_fleet, fleet_needed, search_oracle
from e2e.tracesim.policies import HpaKedaPolicy, OraclePolicy, needed_replicas_per_minute
from e2e.tracesim.sim import SimConfig, Simulation
from e2e.tracesim.sweep import SweepPoint, best_setting, sweep_policies
from e2e.tracesim.trace import TraceRequest


def steady(
    rate_rps: float, start_s: float, duration_s: float, prompt: int = 1500, output: int = 30
) -> list[TraceRequest]:
    n = int(rate_rps * duration_s)
    return [TraceRequest(start_s + i / rate_rps, prompt, output) for i in range(n)]


def bursty() -> list[TraceRequest]:
    """Quiet, then a burst after an empty minute, then quiet: 5 minutes."""
    return steady(0.3, 0, 60) + steady(4.0, 120, 60) + steady(0.5, 180, 120)


CONFIG = SimConfig(cold_start_s=60.0, initial_replicas=1, ttft_target_s=5.0)


def test_a_forked_replay_continues_exactly_like_the_original():
    trace = bursty()
    plan = [1, 1, 6, 2, 1]
    whole = Simulation(trace, OraclePolicy(plan, 60.0), CONFIG).run()
    stopped = Simulation(trace, OraclePolicy(plan, 60.0), CONFIG)
    assert stopped.run_until(150.0) is False
    twin = stopped.fork(OraclePolicy(plan, 60.0))
    assert twin.run_until(1e9) is True
    assert stopped.run_until(1e9) is True
    for r in (stopped.result(), twin.result()):
        assert r.violated_minutes == whole.violated_minutes
        assert r.replica_hours == pytest.approx(whole.replica_hours)
        assert [x.ttft_s for x in stopped.records] == [x.ttft_s for x in twin.records]


def test_searched_plan_keeps_every_minute_in_slo_and_is_locally_cheapest():
    trace = bursty()
    need = needed_replicas_per_minute([r.arrival_s for r in trace], capacity_rps=0.5)
    found = search_oracle(trace, CONFIG, need, max_replicas=16)
    assert found.infeasible_minutes == ()
    assert found.result.violated_minutes == ()
    assert found.plan[2] > 1  # the burst minute does need capacity planned ahead
    assert found.result.replica_hours <= Simulation(trace, OraclePolicy([16] * 5, 60.0), CONFIG).run().replica_hours
    # One replica less in any minute of the plan puts some minute out of SLO (or saves nothing).
    for m, count in enumerate(found.plan):
        if count <= 1:
            continue
        lower = list(found.plan)
        lower[m] -= 1
        r = Simulation(trace, OraclePolicy(lower, 60.0), CONFIG).run()
        assert r.violated_minutes or r.replica_hours >= found.result.replica_hours - 1e-9, (m, found.plan)


def test_a_burst_at_the_very_start_is_reported_infeasible_not_hidden():
    # 3 req/s of long prompts from t=0 with one replica Ready: no plan gets more replicas before a cold start.
    trace = steady(3.0, 0, 60) + steady(0.2, 60, 120)
    found = search_oracle(trace, CONFIG, [1, 1, 1], max_replicas=16)
    assert found.infeasible_minutes == (0,)
    assert found.result.violated_minutes == (0,)
    ok, total = feasible_attainment(found.result, found.infeasible_minutes)
    assert (ok, total) == (2, 2)
    assert found.result.minutes_in_slo == 2


def test_comparison_table_shows_both_oracles_and_the_feasible_column():
    setup = replace(Setup(), max_replicas=16)
    c = replay_all(bursty(), setup, Capacity(rate_rps=0.5, mean_in_flight=2.0, ttft_p95_s=3.0))
    assert c.results[-1].policy == SEARCHED_ORACLE
    assert c.search is not None and c.search.result is c.results[-1]
    text = table(c)
    assert f"| {HEURISTIC_ORACLE} |" in text and f"| {SEARCHED_ORACLE} |" in text
    assert "in SLO, feasible minutes only" in text
    assert c.results[-1].replica_hours <= c.by_name(HEURISTIC_ORACLE).replica_hours + 1e-9


def _point(peer: str, setting: str, attainment_minutes: int, hours: float) -> SweepPoint:
    r = SimResult(peer, 100, 100, attainment_minutes, 0, 0, hours, 0, 1.0, 1.0, 1, ())
    return SweepPoint(peer, setting, r)


def test_best_setting_is_the_cheapest_reaching_the_goal_else_the_best_attainment():
    points = [
        _point("kubeai", "a", 99, 30.0),
        _point("kubeai", "b", 100, 20.0),
        _point("kubeai", "c", 90, 5.0),
        _point("hpa-keda", "x", 80, 9.0),
        _point("hpa-keda", "y", 80, 7.0),
        _point("hpa-keda", "z", 60, 1.0),
    ]
    assert best_setting(points, "kubeai", 0.99)[0].setting == "b"
    assert best_setting(points, "kubeai", 0.99)[1] is True
    best, reached = best_setting(points, "hpa-keda", 0.99)
    assert (best.setting, reached) == ("y", False)
    with pytest.raises(ValueError, match="nobody"):
        best_setting(points, "nobody", 0.99)


def test_sweep_covers_both_peers_with_distinct_settings_including_the_defaults():
    rows = sweep_policies(Setup(), target_in_flight=2.0)
    settings = [s for _, s, _ in rows]
    assert len(settings) == len(set(settings))
    assert {p for p, _, _ in rows} == {"kubeai", "hpa-keda"}
    assert any("targetRequests 2.00 (1x" in s for s in settings)
    assert any(s.startswith("waiting threshold 5, scale-up +1 pod per 60 s") for s in settings)


def test_fleet_needed_is_the_smallest_fixed_fleet_keeping_the_minute_in_slo():
    trace = bursty()
    k = fleet_needed(trace, CONFIG, 2, max_replicas=16)
    assert k is not None and k > 1
    cut = [r for r in trace if r.arrival_s < 180]
    for fleet, in_slo in ((k, True), (k - 1, False)):
        sim = Simulation(cut, OraclePolicy([fleet] * 3, 60.0), replace(CONFIG, initial_replicas=fleet))
        assert (2 not in sim.run().violated_minutes) is in_slo
    assert sim.result().replicas_at_minute_start[:3] == (k - 1, k - 1, k - 1)
    assert fleet_needed(steady(20.0, 0, 60), CONFIG, 0, max_replicas=2) is None


def test_hpa_scale_up_policy_limits_each_step_and_its_period():
    from dialogue_operator.autoscale import Observation, ReplicaMetrics

    def obs(current: int, waiting: float) -> Observation:
        pods = tuple(ReplicaMetrics(f"p{i}", 32, waiting / current) for i in range(current))
        return Observation(current_replicas=current, ready_replicas=current, replicas=pods)

    issue = HpaKedaPolicy(1, 64, waiting_threshold=1.0)
    assert issue.decide(obs(2, 40), 0.0)[0] == 3  # +1 pod
    assert issue.decide(obs(3, 40), 30.0)[0] == 3  # not again within 60 s
    default = HpaKedaPolicy(1, 64, waiting_threshold=1.0, up_pods=4, up_percent=100.0, up_period_s=15.0)
    assert default.decide(obs(2, 40), 0.0)[0] == 6  # max(+4 pods, +100 %)
    assert default.decide(obs(6, 40), 15.0)[0] == 12
    assert default.decide(obs(12, 14), 30.0)[0] == 14  # never past what the metric asks for


def test_best_fixed_fleet_is_the_fewest_replicas_keeping_the_goal():
    trace = bursty()
    fleet = best_fixed_fleet(trace, CONFIG, 1.0, max_replicas=16)
    k = int(fleet.policy.split("(")[1].split()[0])
    assert fleet.policy == f"fixed fleet ({k} replicas)" and fleet.violated_minutes == ()
    fewer = Simulation(trace, Fleet(k - 1), replace(CONFIG, initial_replicas=k - 1)).run()
    assert fewer.violated_minutes  # one replica less loses a minute
    # A fleet sized for the burst is paid for the whole time: dearer than the searched per-minute plan.
    need = needed_replicas_per_minute([r.arrival_s for r in trace], capacity_rps=0.5)
    assert fleet.replica_hours > search_oracle(trace, CONFIG, need, max_replicas=16).result.replica_hours

"""The trace simulator: what a benchmark reader relies on (served requests, holding at zero, costs, GPU caps)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from dialogue_operator.autoscale import Observation, PolicyConfig, Reason
from dialogue_runtime.engine.config import SimProfile

from e2e.tracesim.metrics import RequestRecord, SimResult, percentile
from e2e.tracesim.policies import KubeAIPolicy, OraclePolicy, OursPolicy, needed_replicas_per_minute
from e2e.tracesim.sim import SimConfig, Simulation
from e2e.tracesim.trace import TraceRequest, azure_trace_path, load_trace, thin


class Fixed:
    """A policy that always wants the same count, and records what it was shown."""

    def __init__(self, replicas: int) -> None:
        self.name, self.interval_s, self.replicas = "fixed", 10.0, replicas
        self.seen: list[Observation] = []

    def decide(self, obs: Observation, now_s: float) -> tuple[int, str]:
        self.seen.append(obs)
        return self.replicas, "fixed"


def steady(rate_rps: float, duration_s: float, prompt: int = 200, output: int = 20) -> list[TraceRequest]:
    n = int(rate_rps * duration_s)
    return [TraceRequest(i / rate_rps, prompt, output) for i in range(n)]


def test_loads_the_shared_azure_trace_shape(tmp_path: Path):
    csv = tmp_path / "t.csv"
    csv.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:50.0000000,100,10\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
    )
    reqs = load_trace(csv)
    assert [r.prompt_tokens for r in reqs] == [374, 100]
    assert reqs[0].arrival_s == 0.0
    assert reqs[1].arrival_s == pytest.approx(3.31941)
    scaled = load_trace(csv, rate_scale=2.0, token_scale=0.5)
    assert scaled[1].arrival_s == pytest.approx(3.31941 / 2)
    assert (scaled[1].prompt_tokens, scaled[1].output_tokens) == (50, 5)
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n")
    with pytest.raises(ValueError, match=r"t.csv:2"):
        load_trace(csv)
    csv.write_text("when,tokens\n")
    with pytest.raises(ValueError, match="lacks columns"):
        load_trace(csv)


@pytest.mark.skipif(not azure_trace_path("code").exists(), reason="shared traces not present")
def test_real_trace_is_read_in_full():
    reqs = load_trace(azure_trace_path("code"))
    assert len(reqs) == 8819
    assert 3300 < reqs[-1].arrival_s < 3700


def test_fixed_replicas_serve_everything_and_cost_what_they_run():
    trace = steady(rate_rps=0.5, duration_s=600)
    result = Simulation(trace, Fixed(2), SimConfig(initial_replicas=2)).run()
    assert result.failed == 0
    assert result.slo_attainment == 1.0
    assert result.scale_events == 0
    assert result.replica_hours == pytest.approx(2 * 600 / 3600, rel=0.02)


def test_request_at_zero_is_held_until_a_replica_is_ready():
    cfg = PolicyConfig(min_replicas=0, max_replicas=3, target_in_flight_per_replica=4, scale_to_zero_after_s=120)
    trace = [TraceRequest(30.0, 200, 20), TraceRequest(400.0, 200, 20)]
    sim = Simulation(trace, OursPolicy(cfg), SimConfig(initial_replicas=0, cold_start_s=60.0, held_too_long_s=90))
    result = sim.run()
    assert result.failed == 0
    assert result.held_too_long == 0
    first = sim.records[0]
    # The tick after the arrival asks for a replica; it is ready a cold start later; then the prompt is prefilled.
    assert 60.0 <= first.ttft_s <= 60.0 + 10.0 + 1.0
    # Idle between the two requests long enough: the model went back to zero and came back again.
    reasons = [e.reason for e in sim.scale_events]
    assert reasons.count(Reason.SCALE_FROM_ZERO) == 2
    assert Reason.SCALE_TO_ZERO in reasons


def test_gpu_cap_leaves_replicas_pending_and_ours_stops_adding():
    policy = OursPolicy(PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=2))
    trace = steady(rate_rps=3.0, duration_s=300, prompt=2000, output=50)
    sim = Simulation(trace, policy, SimConfig(initial_replicas=1, max_gpus=3))
    sim.run()
    assert policy.reasons.get(Reason.WAITING_FOR_GPU, 0) > 0
    assert max(e.to_replicas for e in sim.scale_events) <= 3 + 4  # never more than one step past the cap


def test_collector_view_matches_the_replicas():
    policy = Fixed(2)
    Simulation(steady(rate_rps=2.0, duration_s=120), policy, SimConfig(initial_replicas=1, cold_start_s=30)).run()
    first, later = policy.seen[1], policy.seen[-1]
    assert (first.current_replicas, first.ready_replicas, first.starting_replicas) == (2, 1, 1)
    assert later.ready_replicas == 2
    assert any(o.ttft_p95_s is not None for o in policy.seen)
    assert all(o.gateway_in_flight is not None and o.gateway_in_flight >= o.engine_running for o in policy.seen)


def test_oracle_provisions_ahead_of_a_burst_kubeai_lags():
    quiet = steady(rate_rps=0.2, duration_s=300)
    burst = [TraceRequest(300 + r.arrival_s, 1500, 30) for r in steady(rate_rps=4.0, duration_s=120)]
    trace = quiet + burst
    profile = SimProfile()
    need = needed_replicas_per_minute([r.arrival_s for r in trace], capacity_rps=1.0)
    config = SimConfig(profile=profile, initial_replicas=1, ttft_target_s=5.0)
    oracle = Simulation(trace, OraclePolicy(need, cold_start_s=60.0), config).run()
    kubeai = Simulation(trace, KubeAIPolicy(1, 20, target_requests=2.0), config).run()
    assert oracle.slo_attainment == 1.0
    assert kubeai.slo_attainment < 1.0


def test_minute_attainment_counts_failed_requests_as_misses():
    records = [RequestRecord(1.0, 1.0, 0.5), RequestRecord(2.0, 2.0, None), RequestRecord(61.0, 61.0, 0.4)]
    r = SimResult.build(
        policy="x",
        records=records,
        gpu_seconds=7200,
        scale_events=0,
        ttft_target_s=1.0,
        held_too_long_s=10,
        timeline=[(0.0, 2)],
    )
    assert (r.minutes_with_requests, r.minutes_in_slo, r.failed, r.replica_hours) == (2, 1, 1, 2.0)
    assert r.violated_minutes == (0,)
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert math.isnan(percentile([], 0.5))


def test_thinning_is_seeded_and_keeps_about_the_share():
    trace = steady(rate_rps=10.0, duration_s=100)
    a, b = thin(trace, 0.7, seed=1), thin(trace, 0.7, seed=1)
    assert a == b
    assert 600 < len(a) < 800
    assert thin(trace, 0.7, seed=2) != a
    with pytest.raises(ValueError, match="keep"):
        thin(trace, 0.0, seed=1)


def test_command_line_replays_any_csv_of_the_shape(tmp_path: Path, capsys):
    from e2e.tracesim.__main__ import main

    csv = tmp_path / "mine.csv"
    rows = [f"2024-01-01 00:{i // 60:02d}:{i % 60:02d}.0,300,20" for i in range(0, 240, 2)]
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    assert main([str(csv), "--cold-start-s", "30"]) == 0
    out = capsys.readouterr().out
    assert "120 requests" in out
    for name in ("| ours |", "| kubeai |", "| hpa-keda |", "| oracle (heuristic) |", "| oracle (search) |"):
        assert name in out
    assert "hindsight follower" not in out
    assert main([str(csv), "--cold-start-s", "30", "--no-search", "--follower"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("hindsight follower"))
    assert "reaches 99 %" in line and "x oracle (heuristic)" in line
    assert main([str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err

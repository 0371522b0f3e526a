"""The replica policy: what an operator of a chat model would notice about scaling decisions."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from dialogue_operator.autoscale import Observation, PolicyConfig, PolicyState, Reason, ReplicaMetrics, decide


def obs(
    current: int,
    in_flight_per_replica: float = 0.0,
    *,
    ready: int | None = None,
    waiting_per_replica: float = 0.0,
    kv: float = 0.0,
    ttft: float | None = None,
    held: int = 0,
    gateway: int | None = None,
    starting: int = 0,
    unschedulable: int = 0,
    failed: int = 0,
) -> Observation:
    ready = current - starting - unschedulable if ready is None else ready
    scraped = ready - failed
    replicas = tuple(
        ReplicaMetrics(f"p{i}", running=in_flight_per_replica, waiting=waiting_per_replica, kv_cache_usage_ratio=kv)
        for i in range(scraped)
    )
    return Observation(
        current_replicas=current,
        ready_replicas=ready,
        replicas=replicas,
        starting_replicas=starting,
        unschedulable_replicas=unschedulable,
        failed_scrapes=failed,
        ttft_p95_s=ttft,
        gateway_in_flight=gateway,
        gateway_held=held,
    )


CFG = PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=10)


def run(config: PolicyConfig, steps: list[tuple[float, Observation]], state: PolicyState | None = None):
    decisions = []
    for now, o in steps:
        d = decide(state, o, now, config)
        state = d.new_state
        decisions.append(d)
    return decisions


def test_load_within_target_holds():
    d = decide(None, obs(2, 8), 0.0, CFG)
    assert d.desired_replicas == 2
    assert d.reason == Reason.WITHIN_TARGET


def test_load_above_target_scales_up_at_once():
    d = decide(None, obs(2, 14), 0.0, CFG)  # 28 in flight / 10 per replica
    assert d.desired_replicas == 3
    assert d.reason == Reason.LOAD_ABOVE_TARGET
    assert "2 -> 3" in d.message


def test_scale_up_is_step_limited_on_ready_replicas():
    cfg = PolicyConfig(min_replicas=1, max_replicas=100, target_in_flight_per_replica=10, panic_threshold=100)
    d = decide(None, obs(4, 50), 0.0, cfg)  # wants 20
    assert d.desired_replicas == 8  # at most x2 (>= +4) of the Ready replicas
    assert "step-limited" in d.message
    # Four more are already starting: the backlog they will absorb does not justify adding more yet.
    d2 = decide(d.new_state, obs(8, 50, ready=4, starting=4), 10.0, cfg)
    assert d2.desired_replicas == 8
    # Once they are Ready the next step may double again.
    d3 = decide(d2.new_state, obs(8, 25), 70.0, cfg)
    assert d3.desired_replicas == 16


def test_burst_enters_panic_and_freezes_scale_down():
    cfg = PolicyConfig(min_replicas=1, max_replicas=100, target_in_flight_per_replica=10)
    ds = run(cfg, [(0.0, obs(2, 5)), (10.0, obs(2, 100))])
    assert ds[1].reason == Reason.PANIC
    assert ds[1].desired_replicas == 6
    assert "panic" in ds[1].message
    # Load vanishes right after: panic mode holds the replicas for the stable window.
    later = run(cfg, [(float(t), obs(6, 0)) for t in range(20, 70, 10)], ds[1].new_state)
    assert all(d.desired_replicas >= 6 for d in later)
    assert later[-1].reason == Reason.HOLDING_IN_PANIC


def test_scale_down_waits_for_the_stabilization_window_then_steps_down():
    cfg = PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=10, scale_down_stabilization_s=180)
    ds = run(cfg, [(0.0, obs(8, 10))] + [(t, obs(8, 1)) for t in range(10, 400, 10)])
    early = [d for d, t in zip(ds, range(0, 400, 10), strict=True) if t < 180]
    assert all(d.desired_replicas == 8 for d in early)
    assert any(d.reason == Reason.SCALE_DOWN_STABILIZING for d in early)
    first_down = next(d for d in ds if d.desired_replicas < 8)
    assert first_down.reason == Reason.LOAD_BELOW_TARGET
    assert first_down.desired_replicas >= 4  # at most half per decision


def test_after_a_burst_capacity_is_given_back_gradually():
    # Defaults: a recommendation counts in full for 6 minutes, then decays to half at 10 minutes.
    cfg = PolicyConfig(min_replicas=1, max_replicas=40, target_in_flight_per_replica=10)
    state: PolicyState | None = None
    seen: dict[int, int] = {}
    current = 20
    for t in range(0, 1200, 10):
        in_flight = 200 if t == 0 else 2  # a burst, then a trickle
        d = decide(state, obs(current, in_flight / current), float(t), cfg)
        state, current = d.new_state, d.desired_replicas
        seen[t] = current
    assert all(seen[t] == 20 for t in range(0, 361, 10))  # the burst's capacity is kept for the hold
    assert 15 <= seen[480] < 20  # then given back a little at a time, not all at once
    assert 10 <= seen[590] < seen[480]
    steps_down = [t for t in range(370, 600, 10) if seen[t] < seen[t - 10]]
    assert 2 <= len(steps_down) <= 4  # in a few steps (one a minute at most), not a replica every tick
    assert seen[1190] == 1  # and after the window only what the load needs (2 in flight / 10 per replica)
    flat = PolicyConfig(min_replicas=1, max_replicas=40, target_in_flight_per_replica=10, scale_down_floor_ratio=1.0)
    d = run(flat, [(0.0, obs(20, 10)), (480.0, obs(20, 0.1))])[-1]
    assert d.desired_replicas == 20  # a floor ratio of 1 is the flat window (HPA's behaviour)


def test_never_below_min_or_above_max():
    cfg = PolicyConfig(min_replicas=3, max_replicas=5, target_in_flight_per_replica=10)
    up = decide(None, obs(5, 40), 0.0, cfg)
    assert up.desired_replicas == 5
    assert up.reason == Reason.AT_MAX_REPLICAS
    down = run(cfg, [(float(t), obs(3, 0)) for t in range(0, 1000, 10)])
    assert all(d.desired_replicas == 3 for d in down)


def test_scale_to_zero_only_after_idle_period():
    cfg = PolicyConfig(min_replicas=0, max_replicas=5, target_in_flight_per_replica=10, scale_to_zero_after_s=300)
    ds = run(cfg, [(0.0, obs(1, 3))] + [(float(t), obs(1, 0)) for t in range(10, 320, 10)])
    assert all(d.desired_replicas == 1 for d in ds[:-2])
    assert ds[-1].desired_replicas == 0
    assert ds[-1].reason == Reason.SCALE_TO_ZERO
    # While the idle timer runs, the reason says so and when it ends (not "load below target, hold 1 -> 1").
    waiting = ds[10]  # t = 100 s, idle since 0 s
    assert waiting.reason == Reason.AWAITING_SCALE_TO_ZERO
    assert "scaling to zero in 200s" in waiting.message
    assert waiting.signals["scaleToZeroInSeconds"] == 200.0
    assert all(d.reason == Reason.AWAITING_SCALE_TO_ZERO for d in ds[1:-2])


def test_no_awaiting_zero_reason_when_zero_is_not_configured():
    cfg = PolicyConfig(min_replicas=0, max_replicas=5, target_in_flight_per_replica=10, scale_to_zero_after_s=None)
    ds = run(cfg, [(float(t), obs(1, 0)) for t in range(0, 200, 10)])
    assert all(d.reason != Reason.AWAITING_SCALE_TO_ZERO for d in ds)
    busy = decide(None, obs(1, 3), 0.0, PolicyConfig(min_replicas=0, max_replicas=5, scale_to_zero_after_s=60))
    assert busy.reason != Reason.AWAITING_SCALE_TO_ZERO


def test_min_zero_without_idle_timeout_keeps_one_replica():
    cfg = PolicyConfig(min_replicas=0, max_replicas=5, target_in_flight_per_replica=10, scale_to_zero_after_s=None)
    ds = run(cfg, [(float(t), obs(1, 0)) for t in range(0, 2000, 10)])
    assert ds[-1].desired_replicas == 1


def test_partial_metrics_never_scale_to_zero_or_down():
    cfg = PolicyConfig(min_replicas=0, max_replicas=5, target_in_flight_per_replica=10, scale_to_zero_after_s=60)
    # Two ready pods, neither answers /metrics: the policy sees no load but must not act on it.
    ds = run(cfg, [(float(t), obs(2, 0, failed=2)) for t in range(0, 1000, 10)])
    assert all(d.desired_replicas == 2 for d in ds)
    assert ds[-1].reason == Reason.PARTIAL_METRICS
    assert "did not answer" in ds[-1].message


def test_partial_metrics_still_allow_scale_up():
    d = decide(None, obs(2, 30, failed=1), 0.0, CFG)  # the one answering pod alone carries 30
    assert d.desired_replicas > 2


def test_gateway_in_flight_blocks_scale_to_zero():
    cfg = PolicyConfig(min_replicas=0, max_replicas=5, target_in_flight_per_replica=10, scale_to_zero_after_s=60)
    ds = run(cfg, [(float(t), obs(1, 0, gateway=1)) for t in range(0, 600, 10)])
    assert ds[-1].desired_replicas == 1


def test_scale_from_zero_on_held_request():
    cfg = PolicyConfig(min_replicas=0, max_replicas=5, target_in_flight_per_replica=10, scale_to_zero_after_s=60)
    idle = decide(None, obs(0, 0), 0.0, cfg)
    assert idle.desired_replicas == 0
    assert idle.reason == Reason.IDLE
    d = decide(idle.new_state, obs(0, 0, held=1), 5.0, cfg)
    assert d.desired_replicas == 1
    assert d.reason == Reason.SCALE_FROM_ZERO
    assert "held" in d.message
    many = decide(None, obs(0, 0, held=35), 5.0, cfg)
    assert many.desired_replicas == 4


def test_does_not_pile_up_unschedulable_replicas_but_still_scales_down():
    d = decide(None, obs(4, 40, ready=2, unschedulable=2), 0.0, CFG)  # wants 8
    assert d.desired_replicas == 4
    assert d.reason == Reason.WAITING_FOR_GPU
    assert "no node has a free GPU" in d.message
    cfg = PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=10, scale_down_stabilization_s=30)
    ds = run(cfg, [(float(t), obs(4, 0, ready=2, unschedulable=2)) for t in range(0, 100, 10)])
    assert ds[-1].desired_replicas < 4


def test_ttft_guard_adds_a_replica_and_blocks_scale_down():
    cfg = PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=10, ttft_p95_target_s=1.0)
    d = decide(None, obs(4, 5, ttft=3.0), 0.0, cfg)  # concurrency alone would allow 2
    assert d.desired_replicas == 5
    assert d.reason == Reason.TTFT_ABOVE_TARGET
    # A replica is already starting: the guard waits for it rather than adding more, and holds.
    d2 = decide(None, obs(5, 5, ready=4, starting=1, ttft=3.0), 0.0, cfg)
    assert d2.desired_replicas == 5
    assert d2.reason == Reason.HOLDING_FOR_TTFT


def test_replicas_still_starting_are_not_cancelled_by_a_scale_down():
    cfg = replace(CFG, scale_down_stabilization_s=20, scale_down_hold_s=0, panic_threshold=100)
    up = decide(None, obs(4, 30), 0.0, cfg)
    assert up.desired_replicas == 8
    # Load falls while the four new replicas cold-start: they are kept until Ready, not cancelled.
    held = decide(up.new_state, obs(8, 0.5, ready=4, starting=4), 30.0, cfg)
    assert (held.desired_replicas, held.reason) == (8, Reason.HOLDING_FOR_STARTING)
    assert "4 replica(s) asked for 30s ago still starting" in held.message
    down = decide(held.new_state, obs(8, 0.5), 40.0, cfg)  # all Ready: the scale-down goes ahead
    assert down.desired_replicas < 8 and down.reason == Reason.LOAD_BELOW_TARGET
    # A replica that never becomes Ready (a crash loop) blocks scale-down only for starting_hold_s.
    stuck = decide(held.new_state, obs(8, 0.5, ready=7, starting=1), 30.0 + cfg.starting_hold_s, cfg)
    assert stuck.desired_replicas < 8
    off = decide(up.new_state, obs(8, 0.5, ready=4, starting=4), 30.0, replace(cfg, starting_hold_s=None))
    assert off.desired_replicas < 8


# A state whose last load spike lies further back than the default burst memory (900 s).
QUIET_FOR_LONG = PolicyState(last_spike_s=-1000.0)


def _guard_then_recovery(cfg: PolicyConfig, before: float, state: PolicyState | None = QUIET_FOR_LONG) -> list[int]:
    """Replica counts: 4 replicas at `before` in flight each for a minute, then 10 each, a TTFT miss, then 40
    in flight on 5 replicas with TTFT well within target for 3 minutes."""
    steps = [(float(t), obs(4, before, ttft=0.2)) for t in range(0, 60, 10)]
    steps += [(60.0, obs(4, 10, ttft=0.2)), (70.0, obs(4, 10, ttft=3.0))]
    counts = []
    for now, o in steps:
        d = decide(state, o, now, cfg)
        state = d.new_state
        counts.append(d.desired_replicas)
    for t in range(80, 260, 10):
        current = counts[-1]
        d = decide(state, obs(current, 40 / current, ttft=0.2), float(t), cfg)
        state = d.new_state
        counts.append(d.desired_replicas)
    return counts


def test_on_steady_traffic_replicas_the_ttft_guard_added_are_given_back_once_ttft_recovers():
    cfg = PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=10, ttft_p95_target_s=1.0)
    steady = _guard_then_recovery(cfg, before=10)  # 40 in flight all along: no load spike
    assert steady[7] == 5  # the guard acts at once
    assert steady[-1] == 4  # and its replica is not kept as a burst reserve
    assert steady.index(4, 8) <= 9
    # The former behaviour (burst_memory_s=None) keeps it for the whole hold.
    always = _guard_then_recovery(replace(cfg, burst_memory_s=None), before=10)
    assert always[7:] == [5] * len(always[7:])


def test_after_a_load_spike_replicas_the_ttft_guard_added_are_kept_as_a_burst_reserve():
    cfg = PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=10, ttft_p95_target_s=1.0)
    counts = _guard_then_recovery(cfg, before=1)  # 4 -> 40 in flight within 10 s: a spike, then the miss
    assert counts[7:] == [5] * len(counts[7:])
    # A model the policy has no memory of (new, or its status lost) counts as bursty: it keeps the reserve.
    fresh = _guard_then_recovery(cfg, before=10, state=None)
    assert fresh[7:] == [5] * len(fresh[7:])


def test_kv_cache_pressure_scales_up():
    d = decide(None, obs(2, 4, kv=0.96), 0.0, CFG)
    assert d.desired_replicas == 3
    assert d.reason == Reason.KV_CACHE_PRESSURE


def test_engine_queue_scales_up_even_under_a_high_concurrency_target():
    cfg = PolicyConfig(min_replicas=1, max_replicas=20, target_in_flight_per_replica=100)
    d = decide(None, obs(2, 32, waiting_per_replica=16), 0.0, cfg)  # 96 in flight < 200 target, but queueing
    assert d.desired_replicas == 3
    assert d.reason == Reason.QUEUE_PRESSURE


def test_state_round_trips_through_json_and_restart_forgets_nothing():
    steps = [(0.0, obs(8, 10))] + [(float(t), obs(8, 1)) for t in range(10, 300, 10)]
    straight = run(CFG, steps)
    state: PolicyState | None = None
    restarted = []
    for now, o in steps:
        if state is not None:
            state = PolicyState.from_dict(json.loads(json.dumps(state.to_dict())))
        d = decide(state, o, now, CFG)
        state = d.new_state
        restarted.append(d)
    assert [d.desired_replicas for d in restarted] == [d.desired_replicas for d in straight]
    assert "loadSamples" in straight[-1].new_state.to_dict()
    assert PolicyState.from_dict(None) == PolicyState()


def test_state_stays_bounded():
    ds = run(CFG, [(float(t), obs(3, 10)) for t in range(0, 5000, 10)])
    d = ds[-1].new_state.to_dict()
    assert len(d["loadSamples"]) <= CFG.stable_window_s / 10 + 1
    assert len(d["recommendations"]) <= CFG.scale_down_stabilization_s / 10 + 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_replicas": -1}, "min_replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
        ({"max_replicas": 0, "min_replicas": 0}, "max_replicas"),
        ({"target_in_flight_per_replica": 0}, "target_in_flight"),
        ({"scale_down_floor_ratio": 0}, "scale_down_floor_ratio"),
        ({"scale_down_hold_s": -1}, "scale_down_hold_s"),
    ],
)
def test_impossible_bounds_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PolicyConfig(**kwargs)


def test_from_spec_reads_the_user_fields():
    class Spec:
        min_replicas = 0
        max_replicas = 7
        target_in_flight_per_replica = 12
        scale_to_zero_after_seconds = 600.0
        ttft_p95_target_seconds = 2.0

    cfg = PolicyConfig.from_spec(Spec(), stable_window_s=30.0)
    assert (cfg.max_replicas, cfg.target_in_flight_per_replica, cfg.stable_window_s) == (7, 12.0, 30.0)
    with pytest.raises(TypeError, match="unknown"):
        PolicyConfig.from_spec(Spec(), nope=1)


def test_changed_bounds_apply_even_while_holding():
    cfg = PolicyConfig(min_replicas=1, max_replicas=5, target_in_flight_per_replica=10)
    lowered = decide(None, obs(8, 10, failed=2), 0.0, cfg)  # partial metrics would hold 8
    assert lowered.desired_replicas == 5
    assert lowered.reason == Reason.AT_MAX_REPLICAS
    raised = PolicyConfig(min_replicas=4, max_replicas=6, target_in_flight_per_replica=10)
    d = decide(None, obs(2, 1, ready=1, unschedulable=1), 0.0, raised)  # a GPU is short, but min is the user's
    assert d.desired_replicas == 4
    assert d.reason == Reason.AT_MIN_REPLICAS

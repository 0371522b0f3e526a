"""Steady-traffic TTFT control: the per-replica target follows the measured TTFT within bounds (pure policy)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from dialogue_operator.autoscale import Observation, PolicyConfig, PolicyState, Reason, ReplicaMetrics, decide
from dialogue_operator.autoscale.policy import next_target_scale

# A 4 s TTFT target: the setpoint is 0.8 x 4 = 3.2 s by default.
CFG = PolicyConfig(min_replicas=1, max_replicas=40, target_in_flight_per_replica=10, ttft_p95_target_s=4.0)
OFF = replace(CFG, ttft_setpoint_ratio=None)
# Traffic that has been steady for longer than the burst memory (900 s).
QUIET = PolicyState(last_spike_s=-1000.0)


def obs(current: int, total_in_flight: float, ttft: float | None, minute: float | None = None) -> Observation:
    per = total_in_flight / current
    replicas = tuple(ReplicaMetrics(f"p{i}", running=per, waiting=0.0) for i in range(current))
    return Observation(
        current_replicas=current, ready_replicas=current, replicas=replicas, ttft_p95_s=ttft, ttft_p95_minute_s=minute
    )


def steady_run(
    config: PolicyConfig, ttfts: list[float | None], *, state: PolicyState | None = QUIET, start: int = 10
) -> tuple[list[int], list[PolicyState]]:
    """90 requests in flight every 10 s tick with the given TTFT p95s; replicas follow the decisions."""
    current, counts, states = start, [], []
    for i, ttft in enumerate(ttfts):
        d = decide(state, obs(current, 90, ttft), float(i * 10), config)
        state, current = d.new_state, d.desired_replicas
        counts.append(current)
        states.append(state)
    return counts, states


def test_with_ttft_margin_on_steady_traffic_the_target_rises_and_fewer_replicas_serve_the_same_load():
    counts, states = steady_run(CFG, [1.0] * 120)  # 20 minutes well under the 3.2 s setpoint
    scales = [s.target_scale for s in states]
    assert scales == sorted(scales) and scales[0] > 1.0
    assert scales[-1] == CFG.target_scale_max  # bounded
    assert counts[-1] == 7  # ceil(90 / (10 x 1.3))
    off_counts, off_states = steady_run(OFF, [1.0] * 120)
    assert off_counts[-1] == 9  # ceil(90 / 10): today's behaviour, the factor never moves
    assert {s.target_scale for s in off_states} == {1.0}


def test_the_decision_says_the_target_it_used():
    _, states = steady_run(CFG, [1.0] * 60)
    d = decide(states[-1], obs(9, 90, 1.0), 600.0, CFG)
    assert d.signals["targetScale"] > 1.0
    assert "steady traffic" in d.message
    assert "targetScale" not in decide(states[-1], obs(9, 90, 1.0), 600.0, OFF).signals


def test_ttft_near_the_setpoint_holds_the_factor_and_above_it_lowers_it():
    _, states = steady_run(CFG, [1.0] * 4)  # a few ticks of margin: ~+3.4 % each
    high = states[-1].target_scale
    assert 1.0 < high < CFG.target_scale_max
    _, at = steady_run(CFG, [3.2] * 5, state=states[-1])
    assert [s.target_scale for s in at] == [high] * 5
    _, above = steady_run(CFG, [3.9] * 5, state=states[-1])  # over the setpoint, within the 4 s target
    lowered = [s.target_scale for s in above]
    assert lowered == sorted(lowered, reverse=True) and lowered[-1] < high


def test_a_ttft_breach_backs_the_factor_off_and_replicas_are_added_at_once():
    counts, states = steady_run(CFG, [1.0] * 120)
    d = decide(states[-1], obs(counts[-1], 90, 6.0), 1200.0, CFG)
    assert d.new_state.target_scale == pytest.approx(1.0 + (CFG.target_scale_max - 1.0) * CFG.target_scale_backoff)
    assert d.desired_replicas == 8  # ceil(90 / (10 x 1.15)): the lowered target asks for one more at once
    assert d.reason == Reason.LOAD_ABOVE_TARGET
    full_reset = replace(CFG, target_scale_backoff=0.0)
    assert decide(states[-1], obs(counts[-1], 90, 6.0), 1200.0, full_reset).new_state.target_scale == 1.0


def test_the_ttft_guard_adds_one_replica_on_steady_traffic_and_a_quarter_on_bursty_traffic():
    steady = decide(QUIET, obs(12, 90, 6.0), 0.0, OFF)
    assert (steady.desired_replicas, steady.reason) == (13, Reason.TTFT_ABOVE_TARGET)
    bursty = decide(None, obs(12, 90, 6.0), 0.0, OFF)  # no memory of the traffic: counts as bursty
    assert (bursty.desired_replicas, bursty.reason) == (15, Reason.TTFT_ABOVE_TARGET)
    wider = decide(QUIET, obs(12, 90, 6.0), 0.0, replace(OFF, steady_ttft_guard_step_ratio=0.25))
    assert wider.desired_replicas == 15


def test_on_steady_traffic_the_guard_judges_the_last_minutes_p95_and_on_bursty_traffic_the_last_ticks():
    # One long prompt: the last 10 s p95 is 6 s, the minute's 3 s. Steady traffic: no replica for it.
    calm = decide(QUIET, obs(12, 90, 6.0, minute=3.0), 0.0, OFF)
    assert calm.desired_replicas == 12 and calm.reason != Reason.TTFT_ABOVE_TARGET
    assert calm.signals["ttftP95MinuteSeconds"] == 3.0 and calm.signals["ttftP95Seconds"] == 6.0
    slow = decide(QUIET, obs(12, 90, 3.0, minute=4.5), 0.0, OFF)  # the minute itself misses the 4 s target
    assert (slow.desired_replicas, slow.reason) == (13, Reason.TTFT_ABOVE_TARGET)
    assert "TTFT p95 over the last minute 4.50s > target 4s" in slow.message
    # Bursty traffic (no memory counts as bursty): the tick's p95 decides, at once.
    assert decide(None, obs(12, 90, 6.0, minute=3.0), 0.0, OFF).desired_replicas == 15
    # Without a minute's p95 (fresh collector), or with the window turned off, the tick's p95 decides.
    assert decide(QUIET, obs(12, 90, 6.0), 0.0, OFF).desired_replicas == 13
    tick_only = replace(OFF, steady_ttft_guard_on_minute=False)
    assert decide(QUIET, obs(12, 90, 6.0, minute=3.0), 0.0, tick_only).desired_replicas == 13


def test_a_load_spike_or_panic_resets_the_factor_to_one():
    counts, states = steady_run(CFG, [1.0] * 120)
    state, current = states[-1], counts[-1]
    # In flight jumps from 90 to 400 within one tick: a spike and panic; sizing goes back to the plain target.
    d = decide(state, obs(current, 400, 1.0), 1200.0, CFG)
    assert d.new_state.target_scale == 1.0
    assert d.reason == Reason.PANIC
    # And it stays 1 while the burst memory lasts, even with TTFT margin.
    _, after = steady_run(CFG, [1.0] * 30, state=d.new_state, start=d.desired_replicas)
    assert {s.target_scale for s in after} == {1.0}


def test_a_model_without_memory_counts_as_bursty_and_keeps_the_plain_target():
    _, states = steady_run(CFG, [1.0] * 60, state=None)  # 10 minutes < burst memory since the fresh start
    assert {s.target_scale for s in states} == {1.0}


def test_the_factor_stays_within_its_bounds_whatever_ttft_does():
    ttfts: list[float | None] = [0.1, 9.0, None, 3.0, 0.0, 4.1, 0.5, None, 2.0] * 40
    _, states = steady_run(CFG, ttfts)
    assert all(1.0 <= s.target_scale <= CFG.target_scale_max for s in states)
    for previous in (1.0, 1.1, CFG.target_scale_max, 5.0):
        for ttft in (None, 0.0, 1.0, 3.2, 3.9, 4.5, 100.0):
            for steady in (True, False):
                scale = next_target_scale(previous, ttft, CFG, steady=steady, ttft_miss=ttft is not None and ttft > 4)
                assert 1.0 <= scale <= CFG.target_scale_max
                if not steady:
                    assert scale == 1.0


def test_one_tick_moves_the_factor_by_at_most_one_step():
    assert next_target_scale(1.1, 0.0, CFG, steady=True, ttft_miss=False) == pytest.approx(1.1 * 1.05)
    assert next_target_scale(1.2, 3.9, CFG, steady=True, ttft_miss=False) < 1.2
    assert next_target_scale(1.2, 3.9, CFG, steady=True, ttft_miss=False) >= 1.2 * (1 - CFG.target_scale_step)
    assert next_target_scale(1.2, None, CFG, steady=True, ttft_miss=False) == 1.2  # no requests: kept


def test_the_factor_survives_a_restart_through_status():
    ttfts: list[float | None] = [1.0] * 90 + [3.9] * 10 + [1.0] * 20
    straight, straight_states = steady_run(CFG, ttfts)
    state: PolicyState | None = QUIET
    current, restarted = 10, []
    for i, ttft in enumerate(ttfts):
        assert state is not None
        state = PolicyState.from_dict(json.loads(json.dumps(state.to_dict())))
        d = decide(state, obs(current, 90, ttft), float(i * 10), CFG)
        state, current = d.new_state, d.desired_replicas
        restarted.append(current)
    assert restarted == straight
    assert state == straight_states[-1]
    assert state is not None and state.to_dict()["targetScale"] == straight_states[-1].target_scale > 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ttft_setpoint_ratio": 0.0}, "ttft_setpoint_ratio"),
        ({"ttft_setpoint_ratio": 1.5}, "ttft_setpoint_ratio"),
        ({"target_scale_max": 0.9}, "target_scale_max"),
        ({"target_scale_backoff": 1.5}, "target_scale_backoff"),
        ({"target_scale_step": 1.0}, "target_scale_step"),
        ({"steady_scale_down_hold_s": -1.0}, "steady_scale_down_hold_s"),
    ],
)
def test_impossible_control_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PolicyConfig(**kwargs)


def test_a_stored_factor_below_one_is_refused_and_the_status_reader_starts_fresh():
    from dialogue_operator.autoscale import state_from_status

    assert state_from_status({"state": {"targetScale": 0.5}}) is None
    assert state_from_status({"state": {"targetScale": 1.2}}) == PolicyState(target_scale=1.2)

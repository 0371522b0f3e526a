"""The hindsight follower: the causal reference that knows every finished minute's exact need, not the future."""

from __future__ import annotations

import pytest

from e2e.tracesim.follower import FOLLOWER, follower_plan, follower_points, minute_needs, seen_lag_min
from e2e.tracesim.oracle import fewest_replicas
from e2e.tracesim.sim import SimConfig
from e2e.tracesim.sweep import best_setting
from e2e.tracesim.trace import TraceRequest

CONFIG = SimConfig(cold_start_s=60.0, initial_replicas=1, ttft_target_s=5.0)


def steady(rate_rps: float, start_s: float, duration_s: float, prompt: int = 1500) -> list[TraceRequest]:
    return [TraceRequest(start_s + i / rate_rps, prompt, 30) for i in range(int(rate_rps * duration_s))]


def test_a_minutes_need_grows_with_its_load_and_an_empty_minute_needs_nothing():
    trace = steady(0.3, 0, 60) + steady(4.0, 120, 60)
    needs = minute_needs(trace, CONFIG, max_replicas=16)
    lighter = minute_needs(steady(0.3, 0, 60) + steady(1.0, 120, 60), CONFIG, max_replicas=16)
    assert needs[1] == 0 and lighter[1] == 0
    assert needs[2] > lighter[2] >= 1
    # The need is exact: one replica fewer, Ready as long before, loses that minute.
    cut = [TraceRequest(r.arrival_s - 0.0, r.prompt_tokens, r.output_tokens) for r in trace if r.arrival_s < 180]
    assert fewest_replicas(cut, CONFIG, 2, 16) == needs[2]


def test_the_plan_uses_only_minutes_already_seen_plus_the_margin():
    needs = [2, 0, 9, 3, 3, 1]
    plan = follower_plan(needs, lag_min=2, hold_min=1, margin=0.0, initial=4)
    assert plan == [4, 4, 2, 1, 9, 3]  # minute m gets minute m-2's need; before that the starting replicas
    held = follower_plan(needs, lag_min=2, hold_min=3, margin=0.5, initial=4)
    assert held == [4, 4, 3, 3, 14, 14]  # the largest of the last 3 seen, +50 % rounded up
    # The burst at minute 2 is never planned for minute 2 itself: the follower cannot know it yet.
    assert all(p < needs[2] for p in follower_plan(needs, lag_min=2, hold_min=15, margin=0.0, initial=1)[:4])


def test_the_plan_refuses_settings_that_would_look_into_the_future():
    with pytest.raises(ValueError, match="lag_min >= 1"):
        follower_plan([1, 2], lag_min=0, hold_min=1, margin=0.0, initial=1)


def test_a_longer_cold_start_does_not_let_it_see_later_minutes():
    assert seen_lag_min(60.0) == 2
    assert seen_lag_min(100.0) == 2
    assert seen_lag_min(170.0) == 3


def test_a_burst_after_a_quiet_minute_is_lost_by_every_setting_that_does_not_keep_a_reserve():
    # Quiet, then a burst after an empty minute: a follower holding only the last seen minute has 1 replica.
    trace = steady(0.3, 0, 60) + steady(4.0, 120, 60) + steady(0.3, 180, 120)
    needs = minute_needs(trace, CONFIG, max_replicas=16)
    points = follower_points(trace, CONFIG, needs, holds_min=(1, 3), margins=(0.0, 4.0))
    assert {p.peer for p in points} == {FOLLOWER} and len({p.setting for p in points}) == 4
    by_setting = {p.setting: p.result for p in points}
    assert 2 in by_setting["largest need of the last 1 seen minute +0%"].violated_minutes
    assert 2 in by_setting["largest need of the last 3 seen minutes +0%"].violated_minutes
    # Only a reserve several times the quiet minute's need (+400 %) catches it, at several times the cost.
    best, reached = best_setting(points, FOLLOWER, 0.99)
    assert reached and best.result.violated_minutes == ()
    assert best.setting.endswith("+400%")
    assert best.result.replica_hours > 3 * by_setting["largest need of the last 1 seen minute +0%"].replica_hours

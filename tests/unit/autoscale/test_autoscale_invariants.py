"""Promises the policy keeps whatever it is shown: seeded random observation streams, checked at every step."""

from __future__ import annotations

import random

import pytest
from dialogue_operator.autoscale import Observation, PolicyConfig, PolicyState, ReplicaMetrics, decide


def random_observation(rnd: random.Random, current: int) -> Observation:
    unschedulable = rnd.choice([0, 0, 0, rnd.randint(0, current)])
    starting = rnd.randint(0, current - unschedulable)
    ready = current - unschedulable - starting
    failed = rnd.choice([0, 0, 0, rnd.randint(0, ready)])
    idle = rnd.random() < 0.4
    replicas = tuple(
        ReplicaMetrics(
            f"p{i}",
            running=0.0 if idle else rnd.uniform(0, 40),
            waiting=0.0 if idle else rnd.choice([0.0, rnd.uniform(0, 20)]),
            kv_cache_usage_ratio=0.0 if idle else rnd.random(),
        )
        for i in range(ready - failed)
    )
    return Observation(
        current_replicas=current,
        ready_replicas=ready,
        replicas=replicas,
        starting_replicas=starting,
        unschedulable_replicas=unschedulable,
        failed_scrapes=failed,
        ttft_p95_s=None if idle else rnd.choice([None, rnd.uniform(0.1, 20)]),
        gateway_in_flight=None if rnd.random() < 0.3 else (0 if idle else rnd.randint(0, 200)),
        gateway_held=rnd.choice([0, 0, 0, 0, rnd.randint(0, 5)]) if current == 0 else 0,
    )


@pytest.mark.parametrize("seed", range(12))
def test_invariants_hold_on_random_streams(seed: int):
    rnd = random.Random(seed)
    cfg = PolicyConfig(
        min_replicas=rnd.choice([0, 1, 2]),
        max_replicas=rnd.choice([3, 8, 30]),
        target_in_flight_per_replica=rnd.choice([2.0, 8.0, 16.0]),
        scale_to_zero_after_s=rnd.choice([None, 60.0, 300.0]),
        ttft_p95_target_s=rnd.choice([None, 2.0]),
    )
    state: PolicyState | None = None
    current = rnd.randint(0, cfg.max_replicas)
    now = 0.0
    last_active = 0.0
    for _ in range(300):
        now += rnd.choice([5.0, 10.0, 10.0, 30.0])
        obs = random_observation(rnd, current)
        d = decide(state, obs, now, cfg)
        if obs.load > 0 or obs.gateway_held > 0:
            last_active = now
        desired = d.desired_replicas
        assert cfg.min_replicas <= desired <= cfg.max_replicas or (current == 0 and desired == 0)
        if not obs.complete and current > 0:
            assert desired >= min(current, cfg.max_replicas), d.message
        if obs.unschedulable_replicas > 0:
            assert desired <= max(current, cfg.min_replicas), d.message
        if desired == 0 and current > 0:
            assert cfg.scale_to_zero_after_s is not None
            assert now - last_active >= cfg.scale_to_zero_after_s
            assert obs.complete
        if current == 0 and obs.gateway_held > 0:
            assert desired >= 1
        assert d.reason and d.message
        # The state always survives the trip through status.
        state = PolicyState.from_dict(d.new_state.to_dict())
        current = desired

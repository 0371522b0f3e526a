"""status.autoscaling: what the reconcile reads back and what survives an operator restart."""

from __future__ import annotations

import json

from dialogue_operator.api.status import DialogueModelStatus
from dialogue_operator.autoscale import Observation, PolicyConfig, ReplicaMetrics, decide
from dialogue_operator.autoscale.status import DESIRED_REPLICAS, autoscaling_status, state_from_status

CFG = PolicyConfig(min_replicas=1, max_replicas=10, target_in_flight_per_replica=10)


def busy(current: int, per_replica: float) -> Observation:
    return Observation(
        current_replicas=current,
        ready_replicas=current,
        replicas=tuple(ReplicaMetrics(f"p{i}", per_replica, 0.0) for i in range(current)),
    )


def test_decision_lands_in_status_and_the_window_survives_a_restart():
    d1 = decide(state_from_status(None), busy(2, 15), 100.0, CFG)
    s1 = autoscaling_status(d1, None, current_replicas=2, now_rfc3339="2026-01-01T00:00:00Z")
    assert s1[DESIRED_REPLICAS] == 3
    assert s1["recentDecisions"][-1]["reason"] == d1.reason
    assert s1["lastScaleTime"] == "2026-01-01T00:00:00Z"
    # Through the CRD's status model and JSON, as the API server stores it.
    stored = json.loads(DialogueModelStatus(autoscaling=s1).model_dump_json(by_alias=True))["autoscaling"]
    restored = state_from_status(stored)
    assert restored == d1.new_state
    d2 = decide(restored, busy(3, 1), 110.0, CFG)  # load dropped: the window still holds 3
    s2 = autoscaling_status(d2, stored, current_replicas=3, now_rfc3339="2026-01-01T00:00:10Z")
    assert s2[DESIRED_REPLICAS] == 3
    assert s2["lastScaleTime"] == "2026-01-01T00:00:00Z"
    assert len(s2["recentDecisions"]) == 1


def test_unreadable_state_starts_fresh_instead_of_failing():
    assert state_from_status({"state": {"loadSamples": "nonsense"}}) is None
    assert state_from_status({"state": 3}) is None
    assert state_from_status({}) is None


def test_recent_decisions_are_bounded():
    status = None
    current = 1
    for t in range(20):
        d = decide(None, busy(current, 15), float(t), CFG)
        status = autoscaling_status(d, status, current_replicas=current, now_rfc3339=f"t{t}")
        current = d.desired_replicas if d.desired_replicas < 10 else 1
    assert status is not None
    assert len(status["recentDecisions"]) == 5


def test_public_names():
    import dialogue_operator.autoscale as pkg

    assert sorted(pkg.__all__) == sorted(n for n in pkg.__all__ if hasattr(pkg, n))
    assert {"decide", "PolicyConfig", "PolicyState", "Observation", "autoscaling_status"} <= set(pkg.__all__)


def test_gateway_annotation_newer_than_the_last_scale_asks_for_a_replica():
    from dialogue_operator.autoscale import ANNOTATION_SCALE_FROM_ZERO, scale_from_zero_requested
    from dialogue_runtime.gateway import discovery

    assert discovery.ANNOTATION_SCALE_FROM_ZERO == ANNOTATION_SCALE_FROM_ZERO  # one key on both sides
    asked = {ANNOTATION_SCALE_FROM_ZERO: "2026-01-01T00:10:00Z"}
    assert scale_from_zero_requested(asked, None)
    assert scale_from_zero_requested(asked, {"lastScaleTime": "2026-01-01T00:05:00Z"})
    assert scale_from_zero_requested(asked, {"lastScaleTime": "2026-01-01T00:10:00Z"})
    assert not scale_from_zero_requested(asked, {"lastScaleTime": "2026-01-01T00:10:01Z"})
    assert not scale_from_zero_requested({}, None)
    assert not scale_from_zero_requested({ANNOTATION_SCALE_FROM_ZERO: "soon"}, None)


def test_waiting_for_the_zero_timer_says_when_in_status():
    cfg = PolicyConfig(min_replicas=0, max_replicas=3, target_in_flight_per_replica=10, scale_to_zero_after_s=300)
    d1 = decide(None, busy(1, 2), 1000.0, cfg)
    d2 = decide(d1.new_state, busy(1, 0), 1060.0, cfg)  # idle for 60 s of 300
    status = autoscaling_status(d2, None, current_replicas=1, now_rfc3339="2026-01-01T00:01:00Z")
    assert status["reason"] == "AwaitingScaleToZero"
    assert status["message"].endswith("scaling to zero in 240s (scaleToZeroAfterSeconds 300), at 2026-01-01T00:05:00Z")

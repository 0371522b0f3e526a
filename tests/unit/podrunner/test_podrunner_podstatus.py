"""Pod phase and conditions from container statuses, as the kubelet computes them."""

from typing import Any

import pytest

from e2e.cluster.podrunner.podstatus import conditions, pod_phase

RUNNING = {"state": {"running": {}}}
WAITING_NEW = {"state": {"waiting": {"reason": "ContainerCreating"}}}
WAITING_RESTART = {"state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}}
DONE_OK = {"state": {"terminated": {"exitCode": 0}}}
DONE_FAIL = {"state": {"terminated": {"exitCode": 2}}}


@pytest.mark.parametrize(
    ("policy", "statuses", "phase"),
    [
        ("Always", [WAITING_NEW], "Pending"),
        ("Always", [RUNNING, WAITING_NEW], "Pending"),
        ("Always", [RUNNING], "Running"),
        ("Always", [WAITING_RESTART], "Running"),
        ("Never", [DONE_OK], "Succeeded"),
        ("Never", [DONE_OK, DONE_FAIL], "Failed"),
        ("OnFailure", [DONE_OK], "Succeeded"),
        ("OnFailure", [WAITING_RESTART], "Running"),
        ("Never", [RUNNING, DONE_FAIL], "Running"),
    ],
)
def test_phase(policy: str, statuses: list[dict[str, Any]], phase: str) -> None:
    assert pod_phase(policy, [], statuses, init_failed=False) == phase


def test_phase_waits_for_init_containers() -> None:
    assert pod_phase("Always", [RUNNING], [WAITING_NEW], init_failed=False) == "Pending"
    assert pod_phase("Always", [DONE_OK], [RUNNING], init_failed=False) == "Running"
    assert pod_phase("Never", [DONE_FAIL], [WAITING_NEW], init_failed=True) == "Failed"


def _by_type(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in items}


def test_conditions_keep_others_and_transition_times() -> None:
    previous = [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "t0"},
        {"type": "Ready", "status": "False", "lastTransitionTime": "t1", "reason": "ContainersNotReady"},
    ]
    not_ready = _by_type(
        conditions(
            previous,
            sandbox_ready=True,
            initialized=True,
            containers_ready=False,
            readiness_gates=[],
            phase="Running",
            now="t2",
        )
    )
    assert not_ready["PodScheduled"]["lastTransitionTime"] == "t0"
    assert not_ready["Ready"] == {
        "type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": "t1",
        "reason": "ContainersNotReady",
    }  # fmt: skip
    ready = _by_type(
        conditions(
            previous,
            sandbox_ready=True,
            initialized=True,
            containers_ready=True,
            readiness_gates=[],
            phase="Running",
            now="t3",
        )
    )
    assert ready["Ready"]["status"] == "True" and ready["Ready"]["lastTransitionTime"] == "t3"
    assert ready["Ready"]["reason"] is None  # clears the old reason in the merge patch
    assert ready["ContainersReady"]["status"] == "True"


def test_readiness_gates_hold_ready_back() -> None:
    previous = [{"type": "example.com/gate", "status": "False"}]
    result = _by_type(
        conditions(
            previous,
            sandbox_ready=True,
            initialized=True,
            containers_ready=True,
            readiness_gates=["example.com/gate"],
            phase="Running",
            now="t",
        )
    )
    assert result["ContainersReady"]["status"] == "True"
    assert result["Ready"]["status"] == "False" and result["Ready"]["reason"] == "ReadinessGatesNotReady"


def test_completed_pods_are_not_ready() -> None:
    result = _by_type(
        conditions(
            [],
            sandbox_ready=True,
            initialized=True,
            containers_ready=True,
            readiness_gates=[],
            phase="Succeeded",
            now="t",
        )
    )
    assert result["Ready"]["reason"] == "PodCompleted" and result["Ready"]["status"] == "False"
    assert result["PodReadyToStartContainers"]["status"] == "False"


def test_grace_period_prefers_the_deletion_and_has_a_floor() -> None:
    from e2e.cluster.podrunner.podstatus import grace_period_s

    assert grace_period_s({"metadata": {}, "spec": {}}) == 30.0
    assert grace_period_s({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 7}}) == 7.0
    deleting = {"metadata": {"deletionGracePeriodSeconds": 4}, "spec": {"terminationGracePeriodSeconds": 7}}
    assert grace_period_s(deleting) == 4.0
    assert grace_period_s({"metadata": {"deletionGracePeriodSeconds": 0}, "spec": {}}) == 2.0

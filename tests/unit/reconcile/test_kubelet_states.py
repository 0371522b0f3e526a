"""Container states as a real kubelet (v1.35, containerd) writes them become conditions with the kubelet's words.

The pod statuses below are the shapes recorded from the real node of the local cluster (e2e/cluster/realnode.py):
a missing Secret, an image that is not present with pull policy Never, a crash with a termination message, and
an OOM kill.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dialogue_operator.reconcile import ModelObject, Observed, PodSummary, reconcile
from dialogue_operator.settings import Settings

from tests.unit.reconcile.conftest import model_body

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _kubelet_pod(state: dict[str, Any], last: dict[str, Any] | None = None, restarts: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": "chat-base-7d9f", "labels": {"dialogue.dev/variant": "base"}},
        "status": {
            "phase": "Pending" if "waiting" in state and not restarts else "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False", "reason": "ContainersNotReady"},
            ],
            "containerStatuses": [
                {
                    "name": "engine",
                    "image": "ghcr.io/dialogue-operator/runtime:0.1.0",
                    "ready": False,
                    "started": False,
                    "restartCount": restarts,
                    "state": state,
                    "lastState": last or {},
                }
            ],
        },
    }


def _ready(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    observed = Observed(pods=(PodSummary.from_pod(pod),))
    plan = reconcile(ModelObject.from_body(model_body()), observed, Settings(), NOW)
    return {c["type"]: c for c in plan.status["conditions"]}


def test_a_missing_secret_is_a_config_error_with_the_kubelets_message() -> None:
    pod = _kubelet_pod({"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "chat-keys" not found'}})
    conds = _ready(pod)
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "ContainerConfigError"
    assert conds["Ready"]["message"] == 'chat-base-7d9f: secret "chat-keys" not found'
    assert conds["Degraded"]["status"] == "True"  # it will not fix itself: the Secret must be created


def test_a_missing_key_in_a_secret_names_the_key() -> None:
    message = "couldn't find key api-key in Secret team/chat-keys"
    conds = _ready(_kubelet_pod({"waiting": {"reason": "CreateContainerConfigError", "message": message}}))
    assert conds["Ready"]["reason"] == "ContainerConfigError" and message in conds["Ready"]["message"]


def test_an_image_never_pulled_quotes_the_kubelet() -> None:
    message = 'Container image "ghcr.io/dialogue-operator/runtime:9.9.9" is not present with pull policy of Never'
    conds = _ready(_kubelet_pod({"waiting": {"reason": "ErrImageNeverPull", "message": message}}))
    assert conds["Ready"]["reason"] == "ImagePullFailed" and message in conds["Ready"]["message"]
    assert conds["Degraded"]["status"] == "True"


def test_a_crash_loop_carries_the_termination_message() -> None:
    pod = _kubelet_pod(
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container=engine"}},
        {"terminated": {"exitCode": 3, "reason": "Error", "message": "engine failed: weights truncated\n"}},
        restarts=2,
    )
    conds = _ready(pod)
    assert conds["Ready"]["reason"] == "EngineFailed"
    assert conds["Ready"]["message"] == "chat-base-7d9f: engine failed: weights truncated"


def test_a_crash_loop_without_a_message_names_the_exit_code() -> None:
    pod = _kubelet_pod(
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s restarting failed container=engine"}},
        {"terminated": {"exitCode": 139, "reason": "Error"}},
        restarts=3,
    )
    conds = _ready(pod)
    assert conds["Ready"]["reason"] == "CrashLooping"
    assert "exit code 139, Error" in conds["Ready"]["message"]
    assert "back-off 20s" in conds["Ready"]["message"]


def test_an_oom_kill_says_so_and_what_to_change() -> None:
    pod = _kubelet_pod(
        {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container=engine"}},
        {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        restarts=1,
    )
    conds = _ready(pod)
    assert conds["Ready"]["reason"] == "OOMKilled"
    assert "exit code 137" in conds["Ready"]["message"] and "spec.resources.memory" in conds["Ready"]["message"]
    assert conds["Degraded"]["status"] == "True"


def test_an_engine_that_restarted_once_and_is_loading_again_is_not_failing() -> None:
    pod = _kubelet_pod(
        {"running": {"startedAt": "2026-12-07T11:59:00Z"}},
        {"terminated": {"exitCode": 1, "reason": "Error"}},
        restarts=1,
    )
    conds = _ready(pod)
    assert conds["Ready"]["reason"] == "ModelLoading"
    assert conds["Degraded"]["status"] == "False"

"""kstatus semantics (issue 15): transient states are Progressing, terminal ones (or transient ones past the grace
period) Degraded; the pod statuses are the shapes a real kubelet v1.35 and kube-scheduler write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dialogue_operator.reconcile import ModelObject, Observed, PodSummary, reconcile
from dialogue_operator.reconcile.conditions import GRACE_PERIOD
from dialogue_operator.settings import Settings

from tests.unit.reconcile.conftest import model_body

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
STAMP = "2026-12-07T12:00:00Z"
IMAGE = "ghcr.io/dialogue-operator/runtime:0.1.0"


def _pod(
    *,
    state: dict[str, Any] | None = None,
    scheduled: dict[str, Any] | None = None,
    ready: dict[str, Any] | None = None,
    started: bool = False,
    init: list[dict[str, Any]] | None = None,
    restarts: int = 0,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "phase": "Running" if state is not None and "running" in state else "Pending",
        "conditions": [
            scheduled or {"type": "PodScheduled", "status": "True", "lastTransitionTime": STAMP},
            ready or {"type": "Ready", "status": "False", "lastTransitionTime": STAMP, "reason": "ContainersNotReady"},
        ],
        "qosClass": "Burstable",
    }
    if scheduled is None:
        status["startTime"] = STAMP
        status["containerStatuses"] = [
            {
                "name": "engine",
                "image": IMAGE,
                "imageID": "",
                "ready": False,
                "started": started,
                "restartCount": restarts,
                "state": state or {"waiting": {"reason": "ContainerCreating"}},
                "lastState": {},
            }
        ]
    if init is not None:
        status["initContainerStatuses"] = init
    return {
        "metadata": {
            "name": "chat-base-7d9f",
            "labels": {"dialogue.dev/variant": "base"},
            "creationTimestamp": STAMP,
        },
        "status": status,
    }


def _conditions(pod: dict[str, Any], after: timedelta) -> dict[str, tuple[str, str, str]]:
    observed = Observed(pods=(PodSummary.from_pod(pod),))
    plan = reconcile(ModelObject.from_body(model_body()), observed, Settings(), T0 + after)
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in plan.status["conditions"]}


JUST_BEFORE = GRACE_PERIOD - timedelta(seconds=1)


def test_the_grace_period_is_one_constant_of_two_minutes() -> None:
    assert timedelta(seconds=120) == GRACE_PERIOD


def test_a_retried_image_pull_is_progressing_then_degraded_past_the_grace_period() -> None:
    message = (
        f'Back-off pulling image "{IMAGE}": ErrImagePull: failed to pull and unpack image "{IMAGE}": '
        "failed to resolve reference: unexpected status from HEAD request: 401 Unauthorized"
    )
    pod = _pod(state={"waiting": {"reason": "ImagePullBackOff", "message": message}})
    early = _conditions(pod, JUST_BEFORE)
    assert early["Ready"][:2] == ("False", "ImagePullFailed") and "401 Unauthorized" in early["Ready"][2]
    assert early["Progressing"][:2] == ("True", "ImagePullFailed")
    assert early["Degraded"] == ("False", "AsExpected", "")
    late = _conditions(pod, GRACE_PERIOD)
    assert late["Degraded"][:2] == ("True", "ImagePullFailed") and "401 Unauthorized" in late["Degraded"][2]
    assert late["Progressing"][:2] == ("False", "ImagePullFailed")


def test_an_image_never_pulled_or_with_an_invalid_name_is_degraded_at_once() -> None:
    never = f'Container image "{IMAGE}" is not present with pull policy of Never'
    invalid = (
        'Failed to apply default image tag "ghcr.io/Dialogue/runtime": couldn\'t parse image name '
        '"ghcr.io/Dialogue/runtime": invalid reference format: repository name (Dialogue/runtime) must be lowercase'
    )
    for reason, message in (("ErrImageNeverPull", never), ("InvalidImageName", invalid)):
        conds = _conditions(_pod(state={"waiting": {"reason": reason, "message": message}}), timedelta(seconds=1))
        assert conds["Degraded"] == ("True", "ImagePullFailed", f"chat-base-7d9f: {reason}: {message}")
        assert conds["Ready"][:2] == ("False", "ImagePullFailed")


def test_a_config_error_in_an_init_container_is_degraded_at_once_with_the_kubelets_words() -> None:
    message = "couldn't find key api-key in Secret team-a/chat-keys"
    init = [
        {
            "name": "fetch",
            "image": IMAGE,
            "ready": False,
            "restartCount": 0,
            "state": {"waiting": {"reason": "CreateContainerConfigError", "message": message}},
            "lastState": {},
        }
    ]
    pod = _pod(state={"waiting": {"reason": "PodInitializing"}}, init=init)
    conds = _conditions(pod, timedelta(seconds=1))
    assert conds["Ready"] == ("False", "ContainerConfigError", f"chat-base-7d9f: {message}")
    assert conds["Degraded"][:2] == ("True", "ContainerConfigError")


def test_an_unschedulable_pod_is_timed_from_the_schedulers_condition() -> None:
    message = (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are "
        "available: 1 Preemption is not helpful for scheduling."
    )
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": "2026-12-07T12:00:30Z",  # 30 s after the pod was created
    }
    pod = _pod(scheduled=scheduled, ready={"type": "Ready", "status": "False"})
    assert _conditions(pod, timedelta(seconds=30) + JUST_BEFORE)["Degraded"][0] == "False"
    conds = _conditions(pod, timedelta(seconds=30) + GRACE_PERIOD)
    assert conds["Degraded"] == ("True", "Unschedulable", message)  # the scheduler's message, unchanged


def test_a_message_echoing_its_own_end_is_not_doubled() -> None:
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": 'persistentvolumeclaim "models" not found. not found',
        "lastTransitionTime": STAMP,
    }
    conds = _conditions(_pod(scheduled=scheduled, ready={"type": "Ready", "status": "False"}), timedelta(0))
    assert conds["Ready"] == ("False", "ClaimNotFound", 'persistentvolumeclaim "models" not found.')
    assert conds["Progressing"][:2] == ("True", "ClaimNotFound") and conds["Degraded"][0] == "False"


def test_a_claim_still_binding_is_claim_pending_then_degraded() -> None:
    message = (
        "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are "
        "available: 1 Preemption is not helpful for scheduling."
    )
    scheduled = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": STAMP,
    }
    pod = _pod(scheduled=scheduled, ready={"type": "Ready", "status": "False"})
    early = _conditions(pod, JUST_BEFORE)
    assert early["Ready"] == ("False", "ClaimPending", message)
    assert early["Progressing"][:2] == ("True", "ClaimPending") and early["Degraded"][0] == "False"
    assert _conditions(pod, GRACE_PERIOD)["Degraded"] == ("True", "ClaimPending", message)


def test_creating_and_loading_stay_progressing_however_long_they_take() -> None:
    creating = _pod()  # ContainerCreating: pulling a large engine image
    conds = _conditions(creating, timedelta(hours=1))
    assert conds["Ready"] == ("False", "Pending", "chat-base-7d9f: ContainerCreating")
    assert conds["Progressing"][:2] == ("True", "Pending") and conds["Degraded"][0] == "False"
    loading = _pod(state={"running": {"startedAt": STAMP}}, started=False)  # the startup probe has not passed
    conds = _conditions(loading, timedelta(minutes=25))
    assert conds["Ready"][:2] == ("False", "ModelLoading")
    assert conds["Progressing"][:2] == ("True", "ModelLoading") and conds["Degraded"][0] == "False"


def test_a_readiness_probe_failing_after_start_is_engine_not_ready_then_degraded() -> None:
    ready = {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": STAMP}
    pod = _pod(state={"running": {"startedAt": "2026-12-07T11:00:00Z"}}, started=True, ready=ready, restarts=1)
    early = _conditions(pod, JUST_BEFORE)
    assert early["Ready"] == (
        "False",
        "EngineNotReady",
        "chat-base-7d9f: engine started but its readiness probe fails (1 restarts)",
    )
    assert early["Progressing"][:2] == ("True", "EngineNotReady") and early["Degraded"][0] == "False"
    assert _conditions(pod, GRACE_PERIOD)["Degraded"][:2] == ("True", "EngineNotReady")


def test_an_engine_just_past_its_startup_probe_is_still_loading_not_unready() -> None:
    # Ready=False since the pod started (12:00:00), the engine started at 12:00:05 and loaded for 10 minutes:
    # the first readiness check is pending, which is no failure however long the load took.
    ready = {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastTransitionTime": STAMP}
    pod = _pod(state={"running": {"startedAt": "2026-12-07T12:00:05Z"}}, started=True, ready=ready)
    conds = _conditions(pod, timedelta(minutes=10))
    assert conds["Ready"] == (
        "False",
        "ModelLoading",
        "chat-base-7d9f: engine starting, waiting for its readiness probe",
    )
    assert conds["Degraded"][0] == "False"


def test_a_crash_loop_is_degraded_at_once() -> None:
    pod = _pod(
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container=engine"}},
        restarts=1,
    )
    pod["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"exitCode": 3, "reason": "Error", "message": "engine failed: weights truncated\n"}
    }
    conds = _conditions(pod, timedelta(seconds=1))
    assert conds["Degraded"] == ("True", "EngineFailed", "chat-base-7d9f: engine failed: weights truncated")
    assert conds["Progressing"][:2] == ("False", "EngineFailed")


def _model_with(ready: dict[str, Any] | None) -> ModelObject:
    body = model_body()
    return ModelObject.from_body({**body, "status": {"conditions": [ready]} if ready else {}})


CLAIM_GONE = (("ClaimNotFound", 'PersistentVolumeClaim "models" not found in namespace team-a (spec.model.source)'),)


def _missing_conditions(model: ModelObject, at: datetime) -> dict[str, tuple[str, str, str]]:
    plan = reconcile(model, Observed(missing=CLAIM_GONE), Settings(), at)
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in plan.status["conditions"]}


def test_a_missing_claim_is_timed_from_when_the_model_stopped_being_ready() -> None:
    was_ready = {"type": "Ready", "status": "True", "reason": "Available", "lastTransitionTime": "2026-12-06T12:00:00Z"}
    first = reconcile(_model_with(was_ready), Observed(missing=CLAIM_GONE), Settings(), T0)
    conds = {c["type"]: (c["status"], c["reason"]) for c in first.status["conditions"]}
    assert conds == {
        "Ready": ("False", "ClaimNotFound"),
        "Progressing": ("True", "ClaimNotFound"),
        "Degraded": ("False", "AsExpected"),
    }
    seen = ModelObject.from_body({**model_body(), "status": first.status})
    assert _missing_conditions(seen, T0 + JUST_BEFORE)["Degraded"][0] == "False"
    late = _missing_conditions(seen, T0 + GRACE_PERIOD)
    assert late["Degraded"] == ("True", *CLAIM_GONE[0]) and late["Progressing"][0] == "False"


def test_a_new_model_gets_the_grace_period_from_its_first_status() -> None:
    assert _missing_conditions(_model_with(None), T0)["Degraded"][0] == "False"
    long_not_ready = {"type": "Ready", "status": "False", "reason": "Pending", "lastTransitionTime": STAMP}
    assert _missing_conditions(_model_with(long_not_ready), T0 + timedelta(minutes=10))["Degraded"][0] == "True"

"""The autoscaler shell's API traffic: what it writes to status and Events, and when it stays quiet."""

from __future__ import annotations

from typing import Any

from dialogue_operator.autoscale import ANNOTATION_SCALE_FROM_ZERO, Reason
from dialogue_operator.autoscale.pods import DELETION_COST_ANNOTATION as DELETION_COST
from dialogue_operator.k8s.api import KubeError
from dialogue_operator.k8s.autoscaler import AutoscalerShell
from dialogue_operator.k8s.resources import Resource

PAGE = (
    '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{{engine="0",model_name="m"}} {running}\n'
    '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{{engine="0",model_name="m"}} 0.0\n'
)


class RecordingApi:
    """Answers LIST pods from a fixed list and records every write (the shell's whole API surface)."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.lists: list[str] = []
        self.status_writes: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.writes: list[str] = []  # "annotate <pod>" / "status", in order
        self.annotations: dict[str, dict[str, str]] = {}
        self.annotate_error: Exception | None = None

    async def list(self, resource: Resource, label_selector: str, namespace: str | None = None) -> dict[str, Any]:
        self.lists.append(label_selector)
        return {"items": self.pods}

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.status_writes.append(status["autoscaling"])
        self.writes.append("status")

    async def annotate(self, resource: Resource, namespace: str, name: str, annotations: dict[str, str]) -> None:
        if self.annotate_error is not None:
            raise self.annotate_error
        self.annotations.setdefault(name, {}).update(annotations)
        self.writes.append(f"annotate {name}")

    async def post_event(self, model: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((reason, message))


def ready_pod(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p{i}"},
        "status": {"podIP": f"127.0.0.{i}", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def model(autoscaling: dict[str, Any] | None, status: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"source": "hf://org/m"}}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {"metadata": {"name": "chat", "namespace": "ns", **meta}, "spec": spec, "status": status or {}}


def fetch_with(running: float):
    async def fetch(url: str) -> str:
        return PAGE.format(running=running)

    return fetch


AUTO = {"minReplicas": 1, "maxReplicas": 5, "targetInFlightPerReplica": 4}
# Scale down on the first tick with less load: no stabilization window, and a remembered state (a fresh one
# counts as having just recommended the current size).
QUICK_DOWN = {"scale_down_stabilization_s": 0.0, "scale_down_hold_s": 0.0}
SEEN = {"recommendations": [[900.0, 1]]}


async def test_busy_model_scales_up_with_status_and_event_then_stays_quiet():
    api = RecordingApi([ready_pod(1), ready_pod(2)])
    shell = AutoscalerShell(api=api, fetch=fetch_with(10.0))
    d = await shell.tick(model(AUTO, {"autoscaling": {"desiredReplicas": 2}}), now_s=1000.0)
    assert d is not None
    assert d.desired_replicas == 5
    assert api.lists == ["app.kubernetes.io/component=runtime,dialogue.dev/model=chat"]
    assert api.status_writes[-1]["desiredReplicas"] == 5
    assert api.events[-1][0] == d.reason
    written = api.status_writes[-1]
    # Next ticks at the same size: one write for the new reason, then nothing until the refresh is due.
    api.pods = [ready_pod(i) for i in range(1, 6)]
    shell.fetch = fetch_with(3.0)
    await shell.tick(model(AUTO, {"autoscaling": written}), now_s=1010.0)
    writes = len(api.status_writes)
    await shell.tick(model(AUTO, {"autoscaling": api.status_writes[-1]}), now_s=1020.0)
    assert len(api.status_writes) == writes
    assert len(api.events) == 1
    await shell.tick(model(AUTO, {"autoscaling": api.status_writes[-1]}), now_s=1090.0)
    assert len(api.status_writes) == writes + 1


async def test_models_without_autoscaling_cost_no_api_call():
    api = RecordingApi([ready_pod(1)])
    shell = AutoscalerShell(api=api, fetch=fetch_with(1.0))
    assert await shell.tick(model(None), now_s=0.0) is None
    assert await shell.tick(model({**AUTO, "enabled": False}), now_s=0.0) is None
    assert await shell.tick(model({**AUTO, "minReplicas": 9}), now_s=0.0) is None  # invalid: min > max
    assert (api.lists, api.status_writes, api.events) == ([], [], [])


async def test_gateway_annotation_brings_a_model_back_from_zero():
    api = RecordingApi([])
    shell = AutoscalerShell(api=api, fetch=fetch_with(0.0))
    auto = {**AUTO, "minReplicas": 0}
    status = {"autoscaling": {"desiredReplicas": 0, "lastScaleTime": "2026-01-01T00:00:00Z"}}
    quiet = await shell.tick(model(auto, status), now_s=1e9)
    assert quiet is not None
    assert quiet.desired_replicas == 0
    asked = model(auto, status, annotations={ANNOTATION_SCALE_FROM_ZERO: "2026-01-01T00:05:00Z"})
    woken = await shell.tick(asked, now_s=1e9 + 10)
    assert woken is not None
    assert (woken.desired_replicas, woken.reason) == (1, Reason.SCALE_FROM_ZERO)
    assert api.events[-1][0] == Reason.SCALE_FROM_ZERO


async def test_before_a_scale_down_the_idlest_pods_are_marked_to_go_first():
    pods = [ready_pod(1), ready_pod(2), ready_pod(3)]
    pods[2]["metadata"]["annotations"] = {DELETION_COST: "1"}  # already right: not written again
    api = RecordingApi(pods)
    in_flight = {"127.0.0.1": 0.0, "127.0.0.2": 3.0, "127.0.0.3": 1.0}

    async def fetch(url: str) -> str:
        return PAGE.format(running=next(v for ip, v in in_flight.items() if f"//{ip}:" in url))

    shell = AutoscalerShell(api=api, fetch=fetch, policy_overrides=QUICK_DOWN)
    d = await shell.tick(model(AUTO, {"autoscaling": {"desiredReplicas": 3, "state": SEEN}}), now_s=1000.0)
    assert d is not None and d.desired_replicas == 2
    assert api.annotations == {"p1": {DELETION_COST: "0"}, "p2": {DELETION_COST: "3"}}
    assert sorted(api.writes[:2]) == ["annotate p1", "annotate p2"] and api.writes[2] == "status"
    # No scale-down, no annotation.
    api.writes.clear()
    await shell.tick(model(AUTO, {"autoscaling": {"desiredReplicas": 1}}), now_s=1010.0)
    assert not [w for w in api.writes if w.startswith("annotate")]


async def test_without_permission_to_patch_pods_the_scale_down_still_happens():
    api = RecordingApi([ready_pod(1), ready_pod(2)])
    api.annotate_error = KubeError("annotating Pod ns/p1", 403, "pods is forbidden")
    shell = AutoscalerShell(api=api, fetch=fetch_with(0.5), policy_overrides=QUICK_DOWN)
    d = await shell.tick(model(AUTO, {"autoscaling": {"desiredReplicas": 2, "state": SEEN}}), now_s=1000.0)
    assert d is not None and d.desired_replicas == 1
    assert api.status_writes[-1]["desiredReplicas"] == 1

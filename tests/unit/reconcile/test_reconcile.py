"""reconcile(): converges, makes no writes when nothing changed, repairs drift, reports honest conditions."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from dialogue_operator.reconcile import ModelObject, Observed, PodSummary, reconcile
from dialogue_operator.reconcile.core import split_replicas, total_replicas
from dialogue_operator.settings import Settings

from tests.unit.reconcile.conftest import as_stored, model_body

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
SCHED_MSG = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: not helpful"


def _observed_after_apply(desired: list[dict[str, Any]], pods: tuple[PodSummary, ...] = ()) -> Observed:
    return Observed(children={(o["kind"], o["metadata"]["name"]): as_stored(o) for o in desired}, pods=pods)


def _with_status(body: dict[str, Any], status: dict[str, Any]) -> ModelObject:
    return ModelObject.from_body({**body, "status": status})


def _pod(name: str, **kw: Any) -> PodSummary:
    return PodSummary(name=name, variant="base", **kw)


def test_first_reconcile_applies_every_child() -> None:
    plan = reconcile(ModelObject.from_body(model_body()), Observed(), SETTINGS, NOW)
    kinds = sorted(o["kind"] for o in plan.apply)
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"]
    assert plan.delete == [] and plan.status_changed
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "Pending"
    assert plan.status["endpoint"] == "http://chat.team-a.svc.cluster.local:8000/v1"
    assert plan.status["selector"] == "app.kubernetes.io/component=runtime,dialogue.dev/model=chat"


def test_second_reconcile_makes_no_writes() -> None:
    body = model_body()
    first = reconcile(ModelObject.from_body(body), Observed(), SETTINGS, NOW)
    observed = _observed_after_apply(first.desired, (_pod("chat-base-1", phase="Running", ready=True),))
    second = reconcile(_with_status(body, first.status), observed, SETTINGS, NOW + timedelta(seconds=5))
    assert second.apply == [] and second.delete == []
    assert second.status_changed  # pods became ready
    third = reconcile(_with_status(body, second.status), observed, SETTINGS, NOW + timedelta(seconds=60))
    assert third.apply == [] and third.delete == [] and not third.status_changed and third.events == []
    ready = next(c for c in third.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["lastTransitionTime"] == "2026-05-01T12:00:05Z"


def test_drift_is_repaired_and_deleted_children_come_back() -> None:
    body = model_body()
    plan = reconcile(ModelObject.from_body(body), Observed(), SETTINGS, NOW)
    observed = _observed_after_apply(plan.desired)
    edited = copy.deepcopy(observed.children)
    edited[("Deployment", "chat-base")]["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    del edited[("Service", "chat")]
    again = reconcile(_with_status(body, plan.status), Observed(children=edited), SETTINGS, NOW)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in again.apply) == [
        ("Deployment", "chat-base"),
        ("Service", "chat"),
    ]


def test_scaling_reapplies_only_the_deployment_and_removed_children_are_deleted() -> None:
    body = model_body()
    plan = reconcile(ModelObject.from_body(body), Observed(), SETTINGS, NOW)
    observed = _observed_after_apply(plan.desired)
    spec = {**body["spec"], "replicas": 3, "security": {"networkPolicy": False}}
    scaled = reconcile(_with_status(model_body(spec, generation=2), plan.status), observed, SETTINGS, NOW)
    assert [(o["kind"], o["spec"]["replicas"]) for o in scaled.apply] == [("Deployment", 3)]
    assert scaled.delete == [("NetworkPolicy", "chat")]


def test_insufficient_gpu_reports_the_scheduler_message() -> None:
    pods = (_pod("chat-base-x", unschedulable_message=SCHED_MSG, unschedulable_since=NOW - timedelta(seconds=30)),)
    plan = reconcile(ModelObject.from_body(model_body()), Observed(pods=pods), SETTINGS, NOW)
    conds = {c["type"]: c for c in plan.status["conditions"]}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == "InsufficientGPU"
    assert SCHED_MSG in conds["Ready"]["message"]
    assert conds["Progressing"]["status"] == "True" and conds["Progressing"]["reason"] == "InsufficientGPU"
    assert conds["Degraded"]["status"] == "False"  # a node may come (cluster autoscaler): transient at first
    assert [e.reason for e in plan.events] == ["InsufficientGPU"] and plan.events[0].type == "Warning"
    later = reconcile(ModelObject.from_body(model_body()), Observed(pods=pods), SETTINGS, NOW + timedelta(seconds=90))
    conds = {c["type"]: c for c in later.status["conditions"]}
    assert conds["Degraded"]["status"] == "True" and conds["Degraded"]["reason"] == "InsufficientGPU"
    assert conds["Progressing"]["status"] == "False"


def test_pod_problems_map_to_reasons() -> None:
    cases = [
        (_pod("p", waiting_reason="ImagePullBackOff", waiting_message="Back-off pulling image"), "ImagePullFailed"),
        (_pod("p", waiting_reason="CrashLoopBackOff", restarts=3), "CrashLooping"),
        (
            _pod("p", waiting_reason="CrashLoopBackOff", restarts=3, terminated_message="engine: CUDA out of memory"),
            "EngineFailed",
        ),
        (_pod("p", phase="Running"), "ModelLoading"),
        (_pod("p", unschedulable_message="0/1 nodes: node(s) didn't match node affinity"), "Unschedulable"),
    ]
    for pod, reason in cases:
        plan = reconcile(ModelObject.from_body(model_body()), Observed(pods=(pod,)), SETTINGS, NOW)
        ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == reason, pod
    crash = reconcile(ModelObject.from_body(model_body()), Observed(pods=(cases[2][0],)), SETTINGS, NOW)
    assert "CUDA out of memory" in next(c for c in crash.status["conditions"] if c["type"] == "Ready")["message"]


def test_pod_summary_reads_a_real_pod_shape() -> None:
    pod = {
        "metadata": {"name": "chat-base-abc", "labels": {"dialogue.dev/variant": "base"}},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "engine",
                    "restartCount": 2,
                    "started": False,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                    "lastState": {"terminated": {"exitCode": 1, "message": "engine: model not found\n"}},
                }
            ],
        },
    }
    summary = PodSummary.from_pod(pod)
    assert summary.waiting_reason == "CrashLoopBackOff" and summary.terminated_message == "engine: model not found"
    assert summary.restarts == 2 and summary.variant == "base" and not summary.ready


def test_invalid_spec_raises_naming_the_field() -> None:
    body = model_body({"model": {"source": "ftp://x"}})
    try:
        ModelObject.from_body(body)
    except Exception as exc:
        assert "spec.model.source" in str(exc)
    else:
        raise AssertionError("an invalid source must be refused")


def test_replicas_from_spec_or_autoscaler() -> None:
    assert total_replicas(ModelObject.from_body(model_body())) == 1
    spec = {"model": {"source": "hf://o/m"}, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}
    auto = ModelObject.from_body(model_body(spec))
    assert total_replicas(auto) == 1
    assert total_replicas(_with_status(model_body(spec), {"autoscaling": {"desiredReplicas": 9}})) == 4
    assert split_replicas(4, {"base": 90, "fp8": 10}) == {"base": 4, "fp8": 1}
    assert split_replicas(3, {"base": 100, "fp8": 0}) == {"base": 3, "fp8": 1}
    assert split_replicas(0, {"base": 100}) == {"base": 0}


def test_autoscaler_scale_to_zero_is_a_normal_event() -> None:
    spec = {
        "model": {"source": "hf://o/m"},
        "autoscaling": {"minReplicas": 0, "maxReplicas": 4, "scaleToZeroAfterSeconds": 300},
    }
    body = model_body(spec)
    one = {"autoscaling": {"desiredReplicas": 1}}
    first = reconcile(_with_status(body, one), Observed(), SETTINGS, NOW)
    serving = reconcile(
        _with_status(body, {**first.status, **one}),
        _observed_after_apply(first.desired, (_pod("chat-base-1", phase="Running", ready=True),)),
        SETTINGS,
        NOW + timedelta(seconds=5),
    )
    assert [(e.type, e.reason) for e in serving.events] == [("Normal", "Available")]
    idle = {**serving.status, "autoscaling": {"desiredReplicas": 0}}
    zero = reconcile(_with_status(body, idle), _observed_after_apply(serving.desired), SETTINGS, NOW + timedelta(600))
    assert [(e.type, e.reason) for e in zero.events] == [("Normal", "ScaledToZero")]


def test_rollout_target_is_warmed_and_weights_survive_in_status() -> None:
    spec = {
        "model": {"source": "hf://o/m"},
        "variants": [{"name": "fp8", "quantization": "fp8_per_tensor"}],
        "rollout": {"targetVariant": "fp8"},
    }
    plan = reconcile(ModelObject.from_body(model_body(spec)), Observed(), SETTINGS, NOW)
    assert {v["name"]: v["weight"] for v in plan.status["variants"]} == {"base": 100, "fp8": 0}
    assert {o["metadata"]["name"] for o in plan.apply if o["kind"] == "Deployment"} == {"chat-base", "chat-fp8"}
    status = {**plan.status, "variants": [{"name": "base", "weight": 90}, {"name": "fp8", "weight": 10}]}
    later = reconcile(_with_status(model_body(spec), status), Observed(), SETTINGS, NOW)
    assert later.status["traffic"] == "base=90,fp8=10"


def test_fields_the_apiserver_omits_when_empty_are_not_drift() -> None:
    body = model_body()
    plan = reconcile(ModelObject.from_body(body), Observed(), SETTINGS, NOW)
    observed = _observed_after_apply(plan.desired)
    dep = observed.children[("Deployment", "chat-base")]
    dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0].pop("readOnly")  # stands for any false bool
    again = reconcile(_with_status(body, plan.status), observed, SETTINGS, NOW)
    assert [o["kind"] for o in again.apply] == ["Deployment"]  # true -> missing is drift
    mounts = plan.desired[-1]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert all(m.get("readOnly", True) for m in mounts), "the builder writes no false booleans"


def test_rollout_state_machine_weights_in_status_rollout_win() -> None:
    spec = {
        "model": {"source": "hf://o/m"},
        "variants": [{"name": "fp8", "quantization": "fp8_per_tensor"}],
        "rollout": {"targetVariant": "fp8"},
    }
    status = {"rollout": {"phase": "Canary", "weights": {"base": 50, "fp8": 50}}}
    plan = reconcile(_with_status(model_body(spec), status), Observed(), SETTINGS, NOW)
    assert plan.status["traffic"] == "base=50,fp8=50"
    assert plan.status["rollout"] == status["rollout"]  # the rollout controller's state passes through untouched
    promoted = {"rollout": {"phase": "Promoted", "weights": {"fp8": 100}}}
    done = reconcile(_with_status(model_body(spec), promoted), Observed(), SETTINGS, NOW)
    assert {o["metadata"]["name"] for o in done.desired if o["kind"] == "Deployment"} == {"chat-fp8"}
    bogus = {"rollout": {"weights": {"ghost": 100}}}
    fallback = reconcile(_with_status(model_body(spec), bogus), Observed(), SETTINGS, NOW)
    assert fallback.status["traffic"] == "base=100"

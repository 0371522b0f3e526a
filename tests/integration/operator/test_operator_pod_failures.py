"""Runtime pods that fail on the real node (kubelet + containerd): the DialogueModel says why, in the kubelet's
own words: an image no registry has, a missing Secret the engine's environment names, and an engine that exits
at once. The sim engine really runs from the rendered config."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from e2e import images
from e2e.cluster.harness import LocalCluster
from e2e.cluster.realnode import ON_REAL_NODE, REAL_NODE
from tests.integration.operator.conftest import OperatorProcess, apply, condition, get_json, wait_for

pytestmark = pytest.mark.cluster


def _sim_model(name: str, image: str, env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
            "engine": {"kind": "sim", "image": image, "env": env or []},
            "resources": {"gpus": 0},
            "scheduling": ON_REAL_NODE,
        },
    }


def _reason(cluster: LocalCluster, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    cond = condition(get_json(cluster, "dm", name, "-n", namespace))
    return cond if cond.get("reason") == reason else None


def _wait_reason(cluster: LocalCluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: _reason(cluster, namespace, name, reason), timeout_s=120, what=f"{name}: reason {reason}"
    )
    return found


def test_image_pull_failure_missing_secret_and_engine_crash_are_reported(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    runtime = images.image_ref("runtime")
    # an image no registry has (the node has no route off this machine: the pull fails at once)
    apply(cluster, namespace, _sim_model("typo", "ghcr.io/dialogue-operator/runtim:0.1.0"))
    # the engine's environment names a Secret that does not exist: the kubelet cannot build the container
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub-token", "key": "token"}}}]
    apply(cluster, namespace, _sim_model("nokey", runtime, env))
    # an image whose python has no dialogue_runtime: the engine exits at once, and the log tail is the message
    apply(cluster, namespace, _sim_model("crash", images.pause_ref()))

    pull = _wait_reason(cluster, namespace, "typo", "ImagePullFailed")
    assert pull["status"] == "False" and "ghcr.io/dialogue-operator/runtim:0.1.0" in pull["message"], pull
    config = _wait_reason(cluster, namespace, "nokey", "ContainerConfigError")
    assert 'secret "hub-token" not found' in config["message"], config  # the kubelet's words
    assert condition(get_json(cluster, "dm", "nokey", "-n", namespace), "Degraded")["status"] == "True"
    crash = _wait_reason(cluster, namespace, "crash", "EngineFailed")
    assert "dialogue_runtime" in crash["message"], crash  # "No module named dialogue_runtime"
    degraded = condition(get_json(cluster, "dm", "crash", "-n", namespace), "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "EngineFailed"


def test_sim_engine_really_runs_from_the_rendered_config(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    """The operator/runtime contract end to end: engine.json, POD_IP, the http port and /health probes."""
    manifest = _sim_model("sim", images.image_ref("runtime"))
    manifest["spec"]["model"]["servedName"] = "sim-chat"
    apply(cluster, namespace, manifest)
    wait = cluster.kubectl("wait", "--for=condition=Ready", "dm/sim", "-n", namespace, "--timeout=120s", check=False)
    assert wait.returncode == 0, wait.stderr
    pods = get_json(cluster, "pods", "-n", namespace, "-l", "dialogue.dev/model=sim")["items"]
    (pod,) = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert pod["spec"]["nodeName"] == REAL_NODE
    ip = pod["status"]["podIP"]
    with urllib.request.urlopen(f"http://{ip}:8000/v1/models", timeout=10) as resp:
        served = json.loads(resp.read())
    assert [m["id"] for m in served["data"]] == ["sim-chat"]

"""Each example in examples/ becomes Ready on simulated GPU nodes that match what it asks for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import (
    KWOK_SCHEDULING,
    OperatorProcess,
    apply,
    bind_host_folder,
    get_json,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.cluster
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    # The test cluster's GPU nodes are KWOK nodes; the process-backed ones would really start vLLM.
    doc["spec"]["scheduling"] = {**doc["spec"].get("scheduling", {}), **KWOK_SCHEDULING}
    return doc


def _pods(cluster: LocalCluster, namespace: str, model: str) -> list[dict[str, Any]]:
    items = get_json(cluster, "pods", "-n", namespace, "-l", f"dialogue.dev/model={model}").get("items", [])
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def _node_product(cluster: LocalCluster, node: str) -> str:
    return str(get_json(cluster, "node", node)["metadata"]["labels"].get("nvidia.com/gpu.product"))


def test_examples_become_ready_on_matching_gpu_nodes(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # A bound claim `model-store` (what a pre-filled weight volume looks like); KWOK pods never read it.
    pv = bind_host_folder(
        cluster, namespace, "model-store", "/nonexistent/model-store", storage="1Ti", host_path_type=""
    )
    try:
        for name in ("chat-assistant.yaml", "tensor-parallel.yaml", "quantized-variant.yaml"):
            proc = apply(cluster, namespace, _load(name))
            assert proc.returncode == 0, proc.stderr
        for model in ("assistant", "llama-70b", "qwen-chat"):
            wait_ready(cluster, namespace, model, timeout_s=120)

        (tp,) = _pods(cluster, namespace, "llama-70b")
        assert _node_product(cluster, tp["spec"]["nodeName"]) == "NVIDIA-H100-80GB-HBM3"
        assert tp["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"

        qwen = wait_ready(cluster, namespace, "qwen-chat")
        weights = {v["name"]: v["weight"] for v in qwen["status"]["variants"]}
        # The variant starts at weight 0; the rollout controller may already have taken the first step (10 %).
        # Without a gateway there are no samples, so it never goes further (minSamples 50, 300 s steps).
        assert weights in ({"base": 100, "fp8": 0}, {"base": 90, "fp8": 10}), weights
        wait_for(
            lambda: all(
                v["readyReplicas"] >= 1
                for v in get_json(cluster, "dm", "qwen-chat", "-n", namespace)["status"]["variants"]
            ),
            timeout_s=120,
            what="both qwen-chat variants ready",
        )
        pods = _pods(cluster, namespace, "qwen-chat")
        assert sorted(p["metadata"]["labels"]["dialogue.dev/variant"] for p in pods) == ["base", "base", "fp8"]
        assert {_node_product(cluster, p["spec"]["nodeName"]) for p in pods} == {"NVIDIA-L4"}
        config = get_json(cluster, "configmap", "qwen-chat-fp8", "-n", namespace)["data"]["engine.json"]
        assert '"quantization":"fp8_per_tensor"' in config
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", pv, "--wait=false", "--ignore-not-found", check=False)


def test_autoscaling_example_waits_at_zero_and_scales_from_zero_when_the_gateway_asks(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    try:
        proc = apply(cluster, namespace, _load("autoscaling.yaml"))
        assert proc.returncode == 0, proc.stderr

        def idle_at_zero() -> dict[str, Any] | None:
            dm = get_json(cluster, "dm", "chat-autoscaled", "-n", namespace)
            status = dm.get("status") or {}
            ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
            idle = (status.get("autoscaling") or {}).get("reason") == "Idle"
            return dm if idle and ready.get("reason") == "ScaledToZero" else None

        # minReplicas 0 and no traffic: no GPU is taken; the model says why it is not Ready.
        wait_for(idle_at_zero, timeout_s=120, what="chat-autoscaled idle at zero")
        assert _pods(cluster, namespace, "chat-autoscaled") == []
        # What the gateway does when it holds a request for a model at zero: it stamps this annotation.
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        annotation = f"dialogue.dev/scale-from-zero-requested-at={now}"
        cluster.kubectl("annotate", "dm", "chat-autoscaled", "-n", namespace, "--overwrite", annotation)
        dm = wait_ready(cluster, namespace, "chat-autoscaled", timeout_s=120)
        assert dm["status"]["autoscaling"]["recentDecisions"][-1]["reason"] == "ScaleFromZero", dm["status"]
        (pod,) = _pods(cluster, namespace, "chat-autoscaled")
        assert _node_product(cluster, pod["spec"]["nodeName"]) == "NVIDIA-L4"
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)

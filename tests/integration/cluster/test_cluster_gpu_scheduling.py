"""Simulated GPU nodes schedule like real GPU pools: capacity, taint, product affinity, Insufficient GPU."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from cluster_support import apply, get_json, pods, wait_for

from e2e.cluster.harness import LocalCluster
from e2e.cluster.nodes import GPU_PRODUCTS

pytestmark = pytest.mark.cluster
KWOK_NODES = 50


def _kwok_nodes(cluster: LocalCluster) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(cluster, "nodes", "-l", "dialogue.dev/node-kind=kwok")["items"]
    return items


def _ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def test_fifty_kwok_gpu_nodes_are_ready_and_shaped_like_gpu_pools(cluster: LocalCluster) -> None:
    cluster.add_kwok_nodes(KWOK_NODES)  # a reused cluster may have been started with fewer
    wait_for(
        lambda: sum(_ready(n) for n in _kwok_nodes(cluster)) >= KWOK_NODES,
        timeout_s=90,
        what=f"{KWOK_NODES} KWOK GPU nodes Ready",
    )
    nodes = {n["metadata"]["name"]: n for n in _kwok_nodes(cluster)}
    for i in range(KWOK_NODES):
        node = nodes[f"kwok-gpu-{i}"]
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["status"]["capacity"]["cpu"] == "96"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
        assert node["spec"]["podCIDR"].startswith("127.")
        assert {a["type"] for a in node["status"]["addresses"]} >= {"InternalIP", "Hostname"}
    products = Counter(nodes[f"kwok-gpu-{i}"]["metadata"]["labels"]["nvidia.com/gpu.product"] for i in range(50))
    assert set(products) == set(GPU_PRODUCTS)
    assert min(products.values()) >= 16
    cidrs = [nodes[f"kwok-gpu-{i}"]["spec"]["podCIDR"] for i in range(KWOK_NODES)]
    assert len(set(cidrs)) == KWOK_NODES


def _deployment(name: str, replicas: int, gpus: int, extra_spec: str = "", tolerate: bool = True) -> str:
    toleration = (
        "      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]\n" if tolerate else ""
    )
    return f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
{toleration}{extra_spec}      containers:
      - name: engine
        image: ghcr.io/dialogue-operator/runtime:0.1.0
        resources: {{limits: {{nvidia.com/gpu: {gpus}}}}}
"""


def _running(cluster: LocalCluster, namespace: str, app: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = [p for p in pods(cluster, namespace, f"app={app}") if p["status"].get("phase") == "Running"]
        return len(found) >= count

    wait_for(check, timeout_s=90, what=f"{count} pods of {app} Running")
    return found


def test_gpu_deployment_with_toleration_lands_only_on_gpu_nodes(cluster: LocalCluster, namespace: str) -> None:
    # Kept off the process-backed nodes: their pods really run, and this image has nothing to run here.
    not_process = (
        "      affinity:\n"
        "        nodeAffinity:\n"
        "          requiredDuringSchedulingIgnoredDuringExecution:\n"
        "            nodeSelectorTerms:\n"
        "            - matchExpressions:\n"
        "              - {key: dialogue.dev/node-kind, operator: NotIn, values: [process]}\n"
    )
    apply(cluster, _deployment("gpu-engine", replicas=12, gpus=1, extra_spec=not_process), namespace)
    running = _running(cluster, namespace, "gpu-engine", 12)
    gpu_nodes = {
        n["metadata"]["name"]
        for n in get_json(cluster, "nodes")["items"]
        if int(n["status"]["allocatable"].get("nvidia.com/gpu", "0")) > 0
    }
    placed = [p["spec"]["nodeName"] for p in running]
    assert set(placed) <= gpu_nodes
    assert all(p["status"]["podIP"].startswith("127.") for p in running)


def test_node_affinity_on_gpu_product_is_honoured(cluster: LocalCluster, namespace: str) -> None:
    affinity = (
        "      affinity:\n"
        "        nodeAffinity:\n"
        "          requiredDuringSchedulingIgnoredDuringExecution:\n"
        "            nodeSelectorTerms:\n"
        "            - matchExpressions:\n"
        "              - {key: nvidia.com/gpu.product, operator: In, values: [NVIDIA-H100-80GB-HBM3]}\n"
    )
    apply(cluster, _deployment("h100-only", replicas=8, gpus=2, extra_spec=affinity), namespace)
    running = _running(cluster, namespace, "h100-only", 8)
    products = {
        n["metadata"]["name"]: n["metadata"]["labels"].get("nvidia.com/gpu.product")
        for n in get_json(cluster, "nodes")["items"]
    }
    assert {products[p["spec"]["nodeName"]] for p in running} == {"NVIDIA-H100-80GB-HBM3"}


def test_pod_asking_more_gpus_than_any_node_has_stays_pending_with_insufficient_gpu(
    cluster: LocalCluster, namespace: str
) -> None:
    apply(cluster, _deployment("too-big", replicas=1, gpus=9), namespace)
    reason: dict[str, str] = {}

    def unschedulable() -> bool:
        for pod in pods(cluster, namespace, "app=too-big"):
            for cond in pod["status"].get("conditions", []):
                if cond["type"] == "PodScheduled" and cond["status"] == "False":
                    reason.update(phase=pod["status"]["phase"], why=cond.get("reason", ""), msg=cond["message"])
                    return True
        return False

    wait_for(unschedulable, timeout_s=60, what="the scheduler to report the 9-GPU pod unschedulable")
    assert reason["phase"] == "Pending"
    assert reason["why"] == "Unschedulable"
    assert "Insufficient nvidia.com/gpu" in reason["msg"]
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "reason=FailedScheduling").stdout
    assert "Insufficient nvidia.com/gpu" in events


def test_pod_without_the_gpu_toleration_never_lands_on_a_gpu_node(cluster: LocalCluster, namespace: str) -> None:
    apply(cluster, _deployment("no-toleration", replicas=1, gpus=1, tolerate=False), namespace)
    message: list[str] = []

    def unschedulable() -> bool:
        for pod in pods(cluster, namespace, "app=no-toleration"):
            for cond in pod["status"].get("conditions", []):
                if cond["type"] == "PodScheduled" and cond["status"] == "False":
                    message.append(cond["message"])
                    return True
        return False

    wait_for(unschedulable, timeout_s=60, what="the untolerated GPU pod to be reported unschedulable")
    assert "untolerated taint" in message[0]
    assert "nvidia.com/gpu" in message[0]

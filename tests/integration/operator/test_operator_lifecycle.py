"""The operator, running as the chart's ServiceAccount, turns DialogueModels into Ready pods on GPU nodes."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest

from e2e.cluster.harness import LocalCluster
from e2e.cluster.nodes import kwok_gpu_node
from tests.integration.operator.conftest import (
    RESYNC_S,
    OperatorProcess,
    apply,
    condition,
    dialogue_model,
    get_json,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.cluster
CHILD_KINDS = "deployments,services,configmaps,poddisruptionbudgets,networkpolicies"


def _children(cluster: LocalCluster, namespace: str, model: str) -> list[str]:
    listing = get_json(cluster, CHILD_KINDS, "-n", namespace, "-l", f"dialogue.dev/model={model}")
    return sorted(f"{i['kind']}/{i['metadata']['name']}" for i in listing.get("items", []))


def _pods(cluster: LocalCluster, namespace: str, model: str) -> list[dict]:
    listing = get_json(cluster, "pods", "-n", namespace, "-l", f"dialogue.dev/model={model}")
    return [p for p in listing.get("items", []) if not p["metadata"].get("deletionTimestamp")]


def test_model_lifecycle_ready_idle_drift_scale_delete(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    assert apply(cluster, namespace, dialogue_model("chat")).returncode == 0
    wait = cluster.kubectl("wait", "--for=condition=Ready", "dm/chat", "-n", namespace, "--timeout=120s", check=False)
    assert wait.returncode == 0, wait.stderr
    assert _children(cluster, namespace, "chat") == [
        "ConfigMap/chat-base",
        "Deployment/chat-base",
        "NetworkPolicy/chat",
        "PodDisruptionBudget/chat",
        "Service/chat",
    ]
    table = cluster.kubectl("get", "dm", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header[:6] == ["NAME", "READY", "REPLICAS", "AVAILABLE", "TRAFFIC", "ENDPOINT"], table
    assert "base=100" in table and f"http://chat.{namespace}.svc.cluster.local:8000/v1" in table

    # idle: repeated resyncs make zero mutating requests
    wait_for(lambda: _stable_writes(operator), timeout_s=60, what="the operator to settle")
    before, reconciles = operator.mutations(), operator.reconciles()
    _sleep_resyncs(3)
    assert operator.reconciles() >= reconciles + 3, "resyncs must have run"
    assert operator.mutations() == before, "an idle resync must not write"

    # drift: a child deleted or edited by hand comes back
    cluster.kubectl("delete", "service", "chat", "-n", namespace)
    cluster.kubectl("set", "image", "deployment/chat-base", "engine=evil:latest", "-n", namespace)
    wait_for(
        lambda: get_json(cluster, "service", "chat", "-n", namespace).get("metadata", {}).get("uid"),
        timeout_s=30,
        what="the deleted Service to come back",
    )

    def image() -> str:
        dep = get_json(cluster, "deployment", "chat-base", "-n", namespace)
        return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])

    wait_for(lambda: image() != "evil:latest", timeout_s=30, what="the hand-edited image to be restored")
    assert image().startswith("ghcr.io/dialogue-operator/runtime:")

    # kubectl scale goes through the scale subresource to spec.replicas
    cluster.kubectl("scale", "dm/chat", "-n", namespace, "--replicas=3")
    wait_for(
        lambda: (get_json(cluster, "dm", "chat", "-n", namespace).get("status") or {}).get("readyReplicas") == 3,
        timeout_s=120,
        what="3 ready replicas after kubectl scale",
    )
    scale = get_json(cluster, "dm", "chat", "-n", namespace, "--subresource=scale")
    assert scale["spec"]["replicas"] == 3 and "dialogue.dev/model=chat" in scale["status"]["selector"]

    # delete: the garbage collector removes every child through the owner references (foreground: the model
    # stays until its children are gone, so the operator must not re-create them meanwhile)
    cluster.kubectl("delete", "dm", "chat", "-n", namespace, "--cascade=foreground", "--timeout=90s")
    wait_for(lambda: not _children(cluster, namespace, "chat"), timeout_s=60, what="children garbage-collected")


def _sleep_resyncs(n: int) -> None:
    time.sleep(n * RESYNC_S + 0.5)


def _stable_writes(operator: OperatorProcess) -> bool:
    first = operator.mutations()
    _sleep_resyncs(1)
    return operator.mutations() == first


def test_insufficient_gpu_is_reported_and_recovers_when_a_node_fits(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    spec = {"model": {"source": "hf://meta-llama/Llama-3.1-405B@main"}, "resources": {"gpus": 12}}
    apply(cluster, namespace, dialogue_model("big", spec))

    def insufficient() -> dict | None:
        cond = condition(get_json(cluster, "dm", "big", "-n", namespace))
        return cond if cond.get("reason") == "InsufficientGPU" else None

    cond = wait_for(insufficient, timeout_s=60, what="Ready=False reason=InsufficientGPU")
    assert cond["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in cond["message"], cond  # the scheduler's own words
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=big").stdout
    assert "InsufficientGPU" in events

    index = 1000 + int(namespace[-5:], 16) % 1000
    node = kwok_gpu_node(index, gpus=16)
    node["metadata"]["name"] = f"kwok-gpu-16x-{namespace[-5:]}"
    cluster.api().create("/api/v1/nodes", node)
    try:
        wait_ready(cluster, namespace, "big", timeout_s=90)
        (pod,) = _pods(cluster, namespace, "big")
        assert pod["spec"]["nodeName"] == node["metadata"]["name"]
    finally:
        cluster.kubectl("delete", "dm", "big", "-n", namespace, "--wait=true", "--timeout=60s", check=False)
        cluster.kubectl("delete", "node", node["metadata"]["name"], "--ignore-not-found", check=False)


def test_same_name_in_two_namespaces(
    cluster: LocalCluster, namespace: str, start_operator: Callable[[list[str]], OperatorProcess]
) -> None:
    other = f"{namespace[:50]}-b"
    cluster.kubectl("create", "namespace", other)
    try:
        start_operator([namespace, other])
        for ns in (namespace, other):
            apply(cluster, ns, dialogue_model("chat"))
        uids = {ns: wait_ready(cluster, ns, "chat")["metadata"]["uid"] for ns in (namespace, other)}
        for ns in (namespace, other):
            dep = get_json(cluster, "deployment", "chat-base", "-n", ns)
            assert dep["metadata"]["ownerReferences"][0]["uid"] == uids[ns]
        cluster.kubectl("delete", "dm", "chat", "-n", other)
        wait_for(lambda: not _children(cluster, other, "chat"), timeout_s=60, what="children of the deleted one gone")
        assert condition(get_json(cluster, "dm", "chat", "-n", namespace))["status"] == "True"
        assert len(_children(cluster, namespace, "chat")) == 5
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", "--ignore-not-found", check=False)


def test_restart_mid_way_converges_without_duplicates(
    cluster: LocalCluster, namespace: str, start_operator: Callable[[list[str]], OperatorProcess]
) -> None:
    first = start_operator([namespace])
    names = [f"m{i}" for i in range(3)]
    for name in names:
        apply(cluster, namespace, dialogue_model(name))
    wait_for(
        lambda: get_json(cluster, "deployments", "-n", namespace).get("items"),
        timeout_s=30,
        what="the first Deployment",
    )
    first.stop(signal.SIGKILL)  # mid-way: some children applied, statuses not all written
    second = start_operator([namespace])
    for name in names:
        wait_ready(cluster, namespace, name)
    deployments = get_json(cluster, "deployments", "-n", namespace)["items"]
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(f"{n}-base" for n in names)
    for name in names:
        assert len(_pods(cluster, namespace, name)) == 1
    wait_for(lambda: _stable_writes(second), timeout_s=30, what="the restarted operator to settle")


def test_autoscaled_model_takes_its_replicas_from_the_autoscaler(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    spec = {
        "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 4},
    }
    apply(cluster, namespace, dialogue_model("auto", spec))

    def two_ready() -> dict | None:
        status = get_json(cluster, "dm", "auto", "-n", namespace).get("status") or {}
        ok = status.get("readyReplicas") == 2 and (status.get("autoscaling") or {}).get("desiredReplicas") == 2
        return status if ok else None

    wait_for(two_ready, timeout_s=90, what="2 ready replicas decided by the autoscaler (minReplicas)")
    proc = cluster.kubectl("scale", "dm/auto", "-n", namespace, "--replicas=3", check=False)
    assert proc.returncode != 0 and "mutually exclusive" in proc.stderr  # kubectl scale is for fixed replicas


def test_spec_the_crd_admits_but_the_operator_cannot_serve_is_invalid_spec(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    spec = {
        "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
        "variants": [{"name": "fp8", "quantization": "fp8"}],
        "rollout": {"targetVariant": "fp8", "steps": [50, 10]},  # decreasing: only the operator checks order
    }
    assert apply(cluster, namespace, dialogue_model("odd", spec)).returncode == 0

    def invalid() -> dict | None:
        cond = condition(get_json(cluster, "dm", "odd", "-n", namespace))
        return cond if cond.get("reason") == "InvalidSpec" else None

    cond = wait_for(invalid, timeout_s=60, what="Ready=False reason=InvalidSpec")
    assert cond["status"] == "False" and "spec.rollout" in cond["message"], cond
    assert not get_json(cluster, "deployments", "-n", namespace).get("items")

"""The runner's Node object: registration (labels, GPU capacity and taint, podCIDR, addresses), the Ready
condition heartbeat and the kube-node-lease Lease that keeps the node-lifecycle controller content (e2e layer)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import platform
from dataclasses import dataclass
from typing import Any

from e2e.cluster.podrunner.container import now_iso
from e2e.cluster.podrunner.context import HOST_IP
from e2e.cluster.podrunner.kubeapi import STRATEGIC_PATCH, ApiError, KubeClient

log = logging.getLogger("podrunner")

KUBELET_VERSION = "v1.35.4"
LEASE_DURATION_S = 40
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeShape:
    name: str
    pod_cidr: str
    gpus: int
    gpu_product: str
    cpu: str
    memory: str
    max_pods: int
    kubelet_port: int = 0
    unschedulable: bool = False

    def labels(self) -> dict[str, str]:
        labels = {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
            "dialogue.dev/node-kind": "process",
        }
        if self.gpus > 0:
            labels["nvidia.com/gpu.product"] = self.gpu_product
            labels["nvidia.com/gpu.count"] = str(self.gpus)
            labels["nvidia.com/gpu.present"] = "true"
        return labels

    def capacity(self) -> dict[str, str]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": str(self.max_pods), "ephemeral-storage": "100Gi"}
        if self.gpus > 0:
            capacity[GPU_RESOURCE] = str(self.gpus)
        return capacity

    def taints(self) -> list[dict[str, str]]:
        return [dict(GPU_TAINT)] if self.gpus > 0 else []


def node_status(shape: NodeShape, previous: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The status the runner reports: capacity, addresses, info and healthy conditions with a fresh heartbeat."""
    now = now_iso()
    old = {c.get("type"): c for c in previous or []}

    def condition(kind: str, status: str, reason: str, message: str) -> dict[str, Any]:
        before = old.get(kind, {})
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": before.get("lastTransitionTime") if before.get("status") == status else now,
        }

    status: dict[str, Any] = {
        "capacity": shape.capacity(),
        "allocatable": shape.capacity(),
        "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": shape.name}],
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "podrunner is posting ready status"),
        ],
        "nodeInfo": {
            "machineID": shape.name,
            "systemUUID": shape.name,
            "bootID": str(os.getpid()),
            "kernelVersion": platform.release(),
            "osImage": "dialogue-operator process-backed node",
            "containerRuntimeVersion": "podrunner://0.1.0",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }
    if shape.kubelet_port:
        status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": shape.kubelet_port}}
    return status


def register(client: KubeClient, shape: NodeShape) -> None:
    """Create the Node, or take over an existing one with the same podCIDR; then post its status."""
    path = f"/api/v1/nodes/{shape.name}"
    existing = client.get_or_none(path)
    if existing is not None and (existing.get("spec") or {}).get("podCIDR") not in (None, shape.pod_cidr):
        log.warning(
            "node %s exists with podCIDR %s; recreating it with %s",
            shape.name,
            existing["spec"]["podCIDR"],
            shape.pod_cidr,
        )
        client.request("DELETE", path)
        existing = None
    if existing is None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": shape.name, "labels": shape.labels()},
            "spec": {
                "podCIDR": shape.pod_cidr,
                "podCIDRs": [shape.pod_cidr],
                "taints": shape.taints(),
                "unschedulable": shape.unschedulable or None,
            },
        }
        try:
            client.request("POST", "/api/v1/nodes", body=body)
        except ApiError as exc:
            if exc.status != 409:
                raise
    else:
        theirs = [t for t in (existing.get("spec") or {}).get("taints") or [] if t.get("key") != GPU_RESOURCE]
        patch = {
            "metadata": {"labels": shape.labels()},
            "spec": {
                "podCIDR": shape.pod_cidr,
                "podCIDRs": [shape.pod_cidr],
                "taints": theirs + shape.taints(),
                "unschedulable": shape.unschedulable or None,
            },
        }
        client.request("PATCH", path, body=patch, content_type="application/merge-patch+json")
    heartbeat(client, shape)


def heartbeat(client: KubeClient, shape: NodeShape) -> None:
    """Refresh the node's conditions and its Lease."""
    path = f"/api/v1/nodes/{shape.name}"
    current = client.get_or_none(path)
    if current is None:
        raise ApiError(404, f"node {shape.name} was deleted", f"heartbeat of {shape.name}")
    status = node_status(shape, (current.get("status") or {}).get("conditions"))
    client.request("PATCH", f"{path}/status", body={"status": status}, content_type=STRATEGIC_PATCH, timeout_s=10)
    renew_lease(client, shape, str(current["metadata"]["uid"]))


def renew_lease(client: KubeClient, shape: NodeShape, node_uid: str) -> None:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{shape.name}"
    spec = {"holderIdentity": shape.name, "leaseDurationSeconds": LEASE_DURATION_S, "renewTime": now}
    try:
        client.request("PATCH", path, body={"spec": spec}, content_type="application/merge-patch+json", timeout_s=10)
    except ApiError as exc:
        if exc.status != 404:
            raise
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": shape.name,
                "namespace": "kube-node-lease",
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": shape.name, "uid": node_uid}],
            },
            "spec": spec,
        }
        client.request("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body=body)

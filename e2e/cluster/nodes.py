"""Shapes of the simulated GPU nodes and the kwok configuration that drives them (pure builders, e2e cluster layer).

KWOK GPU node `kwok-gpu-<i>`: 8 `nvidia.com/gpu`, a GPU product rotating over A100/H100/L4, the GPU taint,
96 CPUs, 1 TiB memory, 110 pods, an InternalIP and a Hostname address, and a `/24` pod CIDR carved out of
127.64.0.0/10 (loopback, clear of 127.0.0.0/16 and of the process-backed nodes' 127.32.0.0/11).
"""

from __future__ import annotations

import ipaddress
from typing import Any

GPU_PRODUCTS = ("NVIDIA-A100-SXM4-80GB", "NVIDIA-H100-80GB-HBM3", "NVIDIA-L4")
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
NODE_KIND_LABEL = "dialogue.dev/node-kind"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_ANNOTATION_SELECTOR = f"{KWOK_ANNOTATION}=fake"
KWOK_POD_CIDRS = ipaddress.ip_network("127.64.0.0/10")
KWOK_NODE_IPS = ipaddress.ip_network("127.16.0.0/12")
MAX_KWOK_NODES = 2 ** (24 - KWOK_POD_CIDRS.prefixlen)


def kwok_node_name(index: int) -> str:
    return f"kwok-gpu-{index}"


def kwok_pod_cidr(index: int) -> str:
    if not 0 <= index < MAX_KWOK_NODES:
        raise ValueError(f"KWOK node index {index} outside 0..{MAX_KWOK_NODES - 1}")
    return str(ipaddress.ip_network((int(KWOK_POD_CIDRS.network_address) + index * 256, 24)))


def kwok_node_ip(index: int) -> str:
    # 254 usable addresses per /24 of 127.16.0.0/12, skipping .0 and .255.
    base = int(KWOK_NODE_IPS.network_address)
    return str(ipaddress.ip_address(base + (index // 254) * 256 + index % 254 + 1))


def kwok_gpu_node(index: int, *, gpus: int = 8) -> dict[str, Any]:
    """The Node object of KWOK GPU node `index`, status included (kwok keeps capacity and addresses)."""
    name = kwok_node_name(index)
    cidr = kwok_pod_cidr(index)
    product = GPU_PRODUCTS[index % len(GPU_PRODUCTS)]
    resources = {"cpu": "96", "memory": "1Ti", "pods": "110", "ephemeral-storage": "1Ti", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "type": "kwok",
                NODE_KIND_LABEL: "kwok",
                GPU_PRODUCT_LABEL: product,
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.present": "true",
            },
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "taints": [dict(GPU_TAINT)]},
        "status": {
            "capacity": resources,
            "allocatable": dict(resources),
            "addresses": [
                {"type": "InternalIP", "address": kwok_node_ip(index)},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def kwok_config(stages_yaml: str, *, parallelism: int = 16) -> str:
    """kwok's `--config` file: options with raised parallelism, then the Stage documents."""
    options = (
        "apiVersion: config.kwok.x-k8s.io/v1alpha1\n"
        "kind: KwokConfiguration\n"
        "options:\n"
        f"  podPlayStageParallelism: {parallelism}\n"
        f"  nodePlayStageParallelism: {parallelism}\n"
        f"  nodeLeaseParallelism: {parallelism}\n"
        f"  podsOnNodeSyncParallelism: {max(1, parallelism // 2)}\n"
    )
    return options + "---\n" + stages_yaml


def node_is_ready(node: dict[str, Any]) -> bool:
    for cond in node.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False

"""What every pod worker of one runner shares: API client, node facts, IP allocator, mount points, events."""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.cluster.podrunner.container import now_iso
from e2e.cluster.podrunner.ipam import PodIPAllocator
from e2e.cluster.podrunner.kubeapi import ApiError, KubeClient
from e2e.cluster.podrunner.mounts import MountPoints

log = logging.getLogger("podrunner")

HOST_IP = "127.0.0.1"


@dataclass
class RunnerContext:
    client: KubeClient
    node_name: str
    state_dir: Path
    repo_root: Path
    api_host: str
    api_port: int
    allocatable: Mapping[str, str]
    backoff_cap_s: float
    shutdown_grace_s: float
    ipam: PodIPAllocator
    mount_points: MountPoints = field(default_factory=MountPoints)
    ipam_lock: threading.Lock = field(default_factory=threading.Lock)
    probe_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, "probe"))
    shutting_down: threading.Event = field(default_factory=threading.Event)

    @property
    def tag_prefix(self) -> str:
        """The container tag prefix of this node and state directory (another cluster's node of the same name on
        this machine has another)."""
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:10]
        return f"{self.node_name}@{digest}/"

    def pod_dir(self, pod: Mapping[str, Any]) -> Path:
        meta = pod["metadata"]
        return self.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"

    def event(self, pod: Mapping[str, Any], kind: str, reason: str, message: str, field_path: str = "") -> None:
        """Record a core/v1 Event on the pod, as the kubelet would; best effort (never raises)."""
        meta = pod["metadata"]
        stamp = now_iso()
        involved: dict[str, Any] = {
            "kind": "Pod",
            "apiVersion": "v1",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        }
        if field_path:
            involved["fieldPath"] = field_path
        body = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.node_name,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.client.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=body, timeout_s=5)
        except ApiError as exc:
            log.debug("event %s for %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], exc)

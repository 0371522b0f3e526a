"""Benchmark of the nodes whose pods really run: how fast pods become Ready and go away on the real node (kubelet +
containerd + runc, the project's image) and on the process-backed node, side by side with the same Deployment on
KWOK nodes (where nothing runs); what the kubelet, containerd and the pod runner cost; the images' sizes and build
times (from the image cache's records)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from e2e import images
from e2e.cluster.harness import LocalCluster
from e2e.cluster.realnode import REAL_NODE_TAINT

TITLE = "Nodes that run pods: real node (kubelet + containerd) and process-backed node vs KWOK; images"
REPLICAS = (1, 10)
TIMEOUT_S = 180.0


def _deployment(name: str, replicas: int, kind: str) -> str:
    placement = {
        "process": "nodeSelector: {kubernetes.io/hostname: proc-cpu-0}",
        "real": "nodeSelector: {dialogue.dev/node-kind: real}\n      "
        f"tolerations: [{{key: {REAL_NODE_TAINT['key']}, operator: Equal, value: {REAL_NODE_TAINT['value']}, "
        "effect: NoSchedule}]",
        "kwok": "nodeSelector: {dialogue.dev/node-kind: kwok}\n      "
        "tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]",
    }[kind]
    # The real node runs only images it holds (no registry): the operator image has the same python3.
    image = images.image_ref("operator") if kind == "real" else "python:3.11-slim"
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
      {placement}
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: {image}
        imagePullPolicy: IfNotPresent
        command: ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"]
        env: [{{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
"""


def _wait(predicate: Callable[[], bool], what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > TIMEOUT_S:
            raise TimeoutError(f"timed out after {TIMEOUT_S:.0f} s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def _pods(cluster: LocalCluster, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        cluster.api().get_json(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3D{app}").get("items", [])
    )
    return items


def _ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def _cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115 - one read
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115 - one read
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _measure(cluster: LocalCluster, namespace: str, kind: str, replicas: int) -> tuple[float, float]:
    name = f"{kind}-{replicas}"
    started = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=_deployment(name, replicas, kind))
    _wait(
        lambda: len(p := _pods(cluster, namespace, name)) == replicas and all(_ready(x) for x in p),
        f"{replicas} {kind} pods Ready",
    )
    ready_s = time.monotonic() - started
    started = time.monotonic()
    cluster.kubectl("scale", "deployment", name, "-n", namespace, "--replicas=0")
    _wait(lambda: not _pods(cluster, namespace, name), f"{kind} pods gone")
    return ready_s, time.monotonic() - started


def _images_table() -> list[str]:
    rows = ["| image | size (OCI archive) | last build |", "| --- | --- | --- |"]
    for record in sorted(images.cache_dir().glob("*.json")):
        data = json.loads(record.read_text())
        rows.append(f"| `{data['ref']}` | {data['size_bytes'] / 1e6:.0f} MB | {data['build_seconds']:.0f} s |")
    return rows


def run() -> str:
    cluster = LocalCluster(out=lambda line: None)
    started_here = cluster.up()
    namespace = f"bench-podrunner-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", namespace)
    runner = cluster.pid("podrunner-proc-cpu-0")
    kubelet, containerd = cluster.node().pid("kubelet"), cluster.node().pid("containerd")
    if runner is None or kubelet is None or containerd is None:
        raise RuntimeError("the process-backed node proc-cpu-0 or the real node is not running")
    rows = []
    try:
        rss_idle = {name: _rss_mib(pid) for name, pid in (("runner", runner), ("kubelet", kubelet),
                                                           ("containerd", containerd))}  # fmt: skip
        cpu_before = _cpu_s(runner)
        wall_before = time.monotonic()
        for replicas in REPLICAS:
            real = _measure(cluster, namespace, "real", replicas)
            process = _measure(cluster, namespace, "process", replicas)
            kwok = _measure(cluster, namespace, "kwok", replicas)
            rows.append(
                f"| {replicas} | {real[0]:.1f} s | {process[0]:.1f} s | {kwok[0]:.1f} s "
                f"| {real[1]:.1f} s | {process[1]:.1f} s | {kwok[1]:.1f} s |"
            )
        cpu_share = (_cpu_s(runner) - cpu_before) / (time.monotonic() - wall_before)
        rss_after = {name: _rss_mib(pid) for name, pid in (("runner", runner), ("kubelet", kubelet),
                                                            ("containerd", containerd))}  # fmt: skip
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        if started_here:
            cluster.down(quiet=True)
    memory = ", ".join(f"{n} {rss_idle[n]:.0f} MiB before / {rss_after[n]:.0f} MiB after" for n in rss_idle)
    return "\n".join(
        [
            "Load: a Deployment of `python3 -m http.server` bound to `$(POD_IP)` with an HTTP readiness probe",
            "(period 1 s), applied, waited until every replica is Ready, then scaled to 0 and waited until every",
            "pod object is gone. Same manifest on the real node `real-0` (containers from the operator image,",
            "imported, no pull), on `proc-cpu-0` (processes really run, probes really run, SIGTERM on delete)",
            "and on KWOK nodes (nothing runs; Ready is simulated), measured in the same run. In a container",
            "`http.server` is PID 1 and installs no SIGTERM handler, so the kernel ignores the kubelet's SIGTERM",
            "and the pod goes after `terminationGracePeriodSeconds` (5 s) with SIGKILL; the project's",
            "entrypoints (engine supervisor, gateway, operator) handle SIGTERM.",
            "",
            "| replicas | Ready, real node | Ready, process node | Ready, KWOK | gone after scale 0, real node "
            "| gone, process node | gone, KWOK |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Resident memory: {memory}. Pod runner CPU {cpu_share * 100:.1f} % of one core on average during "
            "the runs (probes, status patches, watches).",
            "",
            "Images (`make images`; buildah, bases from Debian packages; time of the last build of each, as its",
            "record says: the base was cached for operator and gateway, not for the runtime):",
            "",
            *_images_table(),
        ]
    )

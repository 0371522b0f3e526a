"""Benchmark of the local cluster: cold builds, start to N nodes Ready, 400 one-GPU pods, memory per component.

Runs its own clusters in a temporary state directory on free ports, so a cluster that is up for tests is never
touched. The side-by-side comparison: the same 400-pod rollout on etcd 3.6.5 (what the harness builds) and on
Debian's etcd 3.4.23 (when /usr/bin/etcd exists), which is why the harness builds etcd.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

from e2e.cluster import build
from e2e.cluster.harness import LocalCluster
from e2e.cluster.procs import ClusterError, free_port_block

TITLE = "Local cluster: builds, start-up, scheduling, memory"
NODE_COUNTS = (10, 100, 1000)
PODS = 400
SMALL = 12
IDLE_BEFORE_ROLLOUT_S = 30.0
DEBIAN_ETCD = Path("/usr/bin/etcd")
POD_TIMEOUT_S = 180.0


def _builds() -> list[str]:
    rows = ["| binary | version | cold build (s) | built | Go | conditions |", "|---|---|---|---|---|---|"]
    for tool, version in (
        ("etcd", build.ETCD_VERSION),
        ("kubernetes", build.KUBERNETES_VERSION),
        ("kwok", build.KWOK_VERSION),
        ("helm", build.HELM_VERSION),
    ):
        info = build.read_build_info(tool, version) or {}
        binaries = info.get("binaries")
        names = ", ".join(str(b) for b in binaries) if isinstance(binaries, list) else tool
        rows.append(
            f"| {names} | {version} | {info.get('seconds', 'not recorded')} | {info.get('built_at', '-')} "
            f"| {info.get('go', '-')} | {info.get('conditions') or _load(info)} |"
        )
    return rows


def _load(info: dict[str, object]) -> str:
    load = info.get("load_average_after")
    return f"load average {load} after the build" if load is not None else "-"


def _cluster(state: Path, nodes: int, log: list[str], etcd: Path | None = None) -> LocalCluster:
    bins = build.binaries()
    return LocalCluster(
        state,
        port_base=free_port_block(),
        kwok_nodes=nodes,
        process_nodes=False,
        real_node=False,  # the control plane's own cost; the real node is measured on its own
        out=log.append,
        bins=dataclasses.replace(bins, etcd=etcd) if etcd else bins,
    )


def _mib(rss: dict[str, int]) -> dict[str, float]:
    return {k: round(v / 2**20) for k, v in rss.items()}


def _pods_running(cluster: LocalCluster, count: int, name: str) -> float:
    """Applies a Deployment of `count` one-GPU pods; seconds until all are Running (inf on timeout)."""
    cluster.kubectl("create", "namespace", "bench", check=False)
    deadline = time.monotonic() + 60
    while cluster.kubectl("get", "sa", "default", "-n", "bench", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("no default ServiceAccount in namespace bench")
        time.sleep(0.2)
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {
            "replicas": count,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "engine",
                            "image": "ghcr.io/dialogue-operator/runtime:0.1.0",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ],
                },
            },
        },
    }
    api = cluster.api()
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
    while time.monotonic() - started < POD_TIMEOUT_S:
        pods = api.get_json(f"/api/v1/namespaces/bench/pods?labelSelector=app%3D{name}", timeout_s=60)["items"]
        if sum(p.get("status", {}).get("phase") == "Running" for p in pods) >= count:
            return time.monotonic() - started
        time.sleep(0.25)
    return float("inf")


def _rollouts(cluster: LocalCluster) -> str:
    """A small rollout (what a test feels) then the 400-pod one, as two table cells.

    The cluster idles first: kwok's relist backoff grows while a cluster runs, as it does during a test session.
    """
    time.sleep(IDLE_BEFORE_ROLLOUT_S)
    cells = []
    for count, name in ((SMALL, "small"), (PODS, "large")):
        took = _pods_running(cluster, count, name)
        cells.append(f"{took:.1f}" if took != float("inf") else f"not all Running after {POD_TIMEOUT_S:.0f}")
    return " | ".join(cells)


def run() -> str:
    root = Path(tempfile.mkdtemp(prefix="dialogue-bench-cluster-"))
    out = ["### Cold builds (recorded by `python -m e2e.setup cluster` when it built each tool)", "", *_builds(), ""]
    starts = [
        "| KWOK GPU nodes | start to all nodes Ready (s) | of which nodes created to Ready (s) |",
        "|---|---|---|",
    ]
    memory: dict[str, dict[str, float]] = {}
    pods_rows = [f"| etcd | {SMALL} one-GPU pods Running (s) | {PODS} one-GPU pods Running (s) |", "|---|---|---|"]
    try:
        for n in NODE_COUNTS:
            log: list[str] = []
            cluster = _cluster(root / f"n{n}", n, log)
            started = time.monotonic()
            cluster.up()
            total = time.monotonic() - started
            nodes_step = next((line for line in log if "KWOK GPU nodes Ready" in line), "")
            step_s = nodes_step.rsplit("(", 1)[-1].rstrip(" s)") if nodes_step else "?"
            starts.append(f"| {n} | {total:.1f} | {step_s} |")
            if n == NODE_COUNTS[0]:
                time.sleep(10)
                memory["at rest (10 nodes, idle 10 s)"] = _mib(cluster.rss_bytes())
            if n == 100:
                pods_rows.append(f"| {build.ETCD_VERSION} (built) | {_rollouts(cluster)} |")
            if n == NODE_COUNTS[-1]:
                time.sleep(10)
                memory[f"{n} nodes Ready (idle 10 s)"] = _mib(cluster.rss_bytes())
            cluster.down(quiet=True)
        if DEBIAN_ETCD.is_file():
            cluster = _cluster(root / "debian-etcd", 100, [], etcd=DEBIAN_ETCD)
            try:
                cluster.up()
                shown = _rollouts(cluster)
            except ClusterError as exc:
                shown = f"failed: {str(exc).splitlines()[0]} | -"
            pods_rows.append(f"| 3.4.23 (Debian etcd-server) | {shown} |")
            cluster.down(quiet=True)
    finally:
        for state in root.iterdir():
            LocalCluster(state, out=lambda s: None).down(quiet=True)
        shutil.rmtree(root, ignore_errors=True)
    components = sorted({c for m in memory.values() for c in m})
    mem_rows = ["| component | " + " | ".join(memory) + " |", "|---|" + "---|" * len(memory)]
    for c in components:
        mem_rows.append(f"| {c} | " + " | ".join(f"{m.get(c, '-')}" for m in memory.values()) + " |")
    mem_rows.append("| **total** | " + " | ".join(f"{sum(m.values()):.0f}" for m in memory.values()) + " |")
    out += ["### Start to N nodes Ready (a fresh cluster each time: etcd on tmpfs, TLS, RBAC)", "", *starts, ""]
    out += [
        f"### One-GPU pods Running (Deployments of {SMALL}, then {PODS}, tolerating the GPU taint; 100 nodes x 8 GPUs)",
        "",
        f"Each cluster idles {IDLE_BEFORE_ROLLOUT_S:.0f} s after its start first, as a test session's cluster does.",
        "",
        *pods_rows,
        "",
        "kwok's client asks for watch-list streams; the API server refuses them on etcd 3.4.23 (\"RequestWatchProgress "
        'is disabled"), so kwok only sees new pods when it relists, with a backoff that grows while the cluster '
        "runs (10-40 s seen in its log). Hence the harness builds etcd 3.6.5.",
        "",
    ]
    out += ["### Resident memory per component (MiB, VmRSS from /proc)", "", *mem_rows, ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(run())

"""A pod runner stopped with SIGTERM leaves nothing running: every container gets SIGTERM, then SIGKILL after the
grace period, and the runner exits 0. Runs its own cordoned node so the shared process nodes are not disturbed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from e2e.cluster.harness import LocalCluster

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[3]
CIDR = "127.15.200.0/24"  # outside every node the cluster starts


def marked(marker: str) -> list[int]:
    needle = f"PODRUNNER_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_until(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def test_sigterm_stops_every_container_and_exits(cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    node = f"proc-test-{uuid.uuid4().hex[:6]}"
    marker = uuid.uuid4().hex
    log = (tmp_path / "runner.log").open("wb")
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "e2e.cluster.podrunner",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--node-name={node}",
            f"--pod-cidr={CIDR}",
            f"--state-dir={tmp_path / 'state'}",
            "--gpus=0",
            "--unschedulable",
            "--shutdown-grace-s=2",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: '"Ready"' in cluster.kubectl("get", "node", node, "-o", "json", check=False).stdout,
            60,
            f"node {node} registered",
        )
        pods = []
        for name, script in (
            ("polite", "sleep 1000"),
            # Ignores SIGTERM (its sleeps die, the loop goes on): only the SIGKILL after the grace period stops it.
            ("stubborn", "trap '' TERM; while true; do sleep 0.2; done"),
        ):
            pods.append(
                f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "{script}"]
    env: [{{name: PODRUNNER_TEST_MARKER, value: "{marker}"}}]
"""
            )
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input="---".join(pods))
        wait_until(lambda: len(_groups(marker)) == 2, 60, "both containers running")
        started = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=60) == 0
        took_s = time.monotonic() - started
        assert not marked(marker), "a container process outlived its runner"
        assert took_s < 20, f"shutdown took {took_s:.1f} s with a 2 s grace cap"
    finally:
        if runner.poll() is None:
            os.killpg(runner.pid, signal.SIGKILL)
            runner.wait()
        log.close()
        cluster.kubectl("delete", "pod", "--all", "-n", namespace, "--force", "--grace-period=0", check=False)
        cluster.kubectl("delete", "node", node, "--wait=false", check=False)


def _groups(marker: str) -> set[int]:
    """Process groups (one per container) of the marked processes still alive."""
    groups = set()
    for pid in marked(marker):
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    return groups

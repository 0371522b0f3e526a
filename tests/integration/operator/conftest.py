"""Fixtures for operator tests: the chart installed with its ServiceAccount, and the real operator process
(`python -m dialogue_operator`) running locally with that ServiceAccount's token (never an admin credential)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.cluster.harness import LocalCluster
from e2e.cluster.procs import free_port

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "dialogue-operator"
KWOK_SCHEDULING = {"nodeSelector": {"dialogue.dev/node-kind": "kwok"}}
RESYNC_S = 2.0

pytestmark = pytest.mark.cluster


def wait_for(predicate: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.25) -> Any:
    """Poll until `predicate()` is truthy and return it; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def get_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        return {}
    loaded: dict[str, Any] = yaml.safe_load(proc.stdout)
    return loaded


def bind_host_folder(
    cluster: LocalCluster,
    namespace: str,
    claim: str,
    host_path: str,
    *,
    storage: str = "1Gi",
    access_mode: str = "ReadOnlyMany",
    host_path_type: str = "Directory",
) -> str:
    """A hostPath PersistentVolume bound to the claim `claim` in `namespace` (what a pre-filled model volume looks
    like); waits until the claim is Bound and returns the volume's name (cluster-scoped: delete it after)."""
    pv = f"{claim}-{namespace}"[:63]
    host: dict[str, Any] = {"path": host_path, **({"type": host_path_type} if host_path_type else {})}
    objects = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": storage},
                "accessModes": [access_mode],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": host,
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": [access_mode],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": storage}},
            },
        },
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    wait_for(
        lambda: get_json(cluster, "pvc", claim, "-n", namespace).get("status", {}).get("phase") == "Bound",
        timeout_s=60,
        what=f"PVC {claim} Bound",
    )
    return pv


def apply(cluster: LocalCluster, namespace: str, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)


def dialogue_model(name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """A DialogueModel on KWOK nodes (pods become Ready there without running anything)."""
    body: dict[str, Any] = spec or {"model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"}}
    body = {**body, "scheduling": {**KWOK_SCHEDULING, **body.get("scheduling", {})}}
    return {"apiVersion": "dialogue.dev/v1alpha1", "kind": "DialogueModel", "metadata": {"name": name}, "spec": body}


def condition(dm: dict[str, Any], type_: str = "Ready") -> dict[str, Any]:
    return next((c for c in (dm.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def wait_ready(cluster: LocalCluster, namespace: str, name: str, timeout_s: float = 60) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        dm = get_json(cluster, "dm", name, "-n", namespace)
        return dm if condition(dm).get("status") == "True" else None

    result: dict[str, Any] = wait_for(ready, timeout_s=timeout_s, what=f"DialogueModel {namespace}/{name} Ready")
    return result


@dataclass
class Release:
    namespace: str
    name: str
    service_account: str
    kubeconfig: Path


@pytest.fixture(scope="session")
def chart_release(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """`helm install` of the chart (its operator pod lands on a KWOK node, so it runs nothing); a kubeconfig
    holding a TokenRequest token of the chart's ServiceAccount."""
    helm = str(cluster.bins.helm)
    suffix = uuid.uuid4().hex[:5]
    namespace, release = f"dialogue-system-{suffix}", f"dop-{suffix}"
    # Helm installs CRDs only when absent; the test must run against this checkout's CRD.
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    values = {
        "nodeSelector": {"dialogue.dev/node-kind": "kwok"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    values_file = tmp_path_factory.mktemp("chart") / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    subprocess.run(
        [helm, "install", release, str(CHART), "-n", namespace, "--create-namespace", "-f", str(values_file), "--wait",
         "--timeout", "300s"],
        env=env, check=True, capture_output=True, text=True, timeout=330,
    )  # fmt: skip
    sa = release + "-dialogue-operator"
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration", "2h").stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    cluster_entry = admin["clusters"][0]["cluster"]
    ca_data = (
        cluster_entry.get("certificate-authority-data")
        or base64.b64encode(Path(cluster_entry["certificate-authority"]).read_bytes()).decode()
    )
    kubeconfig = tmp_path_factory.mktemp("sa") / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": cluster.api_server_url, "certificate-authority-data": ca_data},
                    }
                ],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": "local", "user": "operator"}}],
                "current-context": "operator",
            }
        )
    )
    try:
        yield Release(namespace, release, sa, kubeconfig)
    finally:
        subprocess.run([helm, "uninstall", release, "-n", namespace], env=env, capture_output=True, timeout=120)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


class OperatorProcess:
    """The real operator, as a local process authenticated as the chart's ServiceAccount."""

    def __init__(self, release: Release, namespaces: list[str], log: Path) -> None:
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(release.kubeconfig),
            "DIALOGUE_OPERATOR_NAMESPACES": ",".join(namespaces),
            "DIALOGUE_OPERATOR_RESYNC_INTERVAL_S": str(RESYNC_S),
            "DIALOGUE_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "DIALOGUE_OPERATOR_HEALTH_PORT": "0",
            "DIALOGUE_OPERATOR_LOG_LEVEL": "WARNING",
            "DIALOGUE_OPERATOR_AUTOSCALE_INTERVAL_S": "1",
        }
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dialogue_operator"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )
        wait_for(self._metrics_up, timeout_s=60, what="the operator's metrics endpoint")

    def _metrics_up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        try:
            self.metrics()
        except OSError:
            return False
        return True

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            text: str = resp.read().decode()
            return text

    def mutations(self) -> dict[str, float]:
        """Mutating API requests sent so far, by 'VERB Kind'."""
        counts: dict[str, float] = {}
        for line in self.metrics().splitlines():
            if line.startswith("dialogue_operator_api_mutating_requests{"):
                labels, value = line.rsplit(" ", 1)
                kind = labels.split('kind="')[1].split('"')[0]
                verb = labels.split('verb="')[1].split('"')[0]
                counts[f"{verb} {kind}"] = float(value)
        return counts

    def reconciles(self) -> float:
        """Reconciles run so far."""
        for line in self.metrics().splitlines():
            if line.startswith("dialogue_operator_reconcile_duration_seconds_count"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def start_operator(chart_release: Release, tmp_path: Path) -> Iterator[Callable[[list[str]], OperatorProcess]]:
    """Factory: start the operator watching the given namespaces; every process is stopped after the test."""
    started: list[OperatorProcess] = []

    def start(namespaces: list[str]) -> OperatorProcess:
        op = OperatorProcess(chart_release, namespaces, tmp_path / f"operator-{len(started)}.log")
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


@pytest.fixture
def operator(start_operator: Callable[[list[str]], OperatorProcess], namespace: str) -> OperatorProcess:
    """The operator watching this test's namespace."""
    return start_operator([namespace])

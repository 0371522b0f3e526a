"""The real node: a kubelet with containerd runs the project's own images in real containers next to the KWOK nodes.

What a user of a kind-like cluster relies on: the node Ready with its GPUs advertised, a pod of the `restricted`
Pod Security level running from an imported image (no registry), `kubectl logs`, `exec` and `port-forward`, the
pod reaching the API server through the `kubernetes` Service, and the kubelet's own states for a missing Secret,
an image that is not there and a crashing container. A pod that breaks `restricted` is refused, so the check can
fail.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from typing import Any

import pytest
from cluster_support import get_json, wait_for

from e2e import images
from e2e.cluster.harness import LocalCluster
from e2e.cluster.procs import free_port
from e2e.cluster.realnode import ON_REAL_NODE, REAL_NODE, REAL_NODE_GPUS, REAL_NODE_TAINT

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _pod(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            **ON_REAL_NODE,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "main",
                    "image": images.image_ref("operator"),
                    "imagePullPolicy": "Never",
                    "securityContext": RESTRICTED_CONTAINER,
                    **container,
                }
            ],
            "terminationGracePeriodSeconds": 1,
            **spec,
        },
    }


WEB = {
    "command": ["python3", "-m", "http.server", "8000", "--directory", "/tmp"],
    "env": [{"name": "GREETING", "valueFrom": {"secretKeyRef": {"name": "greeting", "key": "text"}}}],
    "readinessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1},
    "resources": {"limits": {"cpu": "200m", "memory": "128Mi", "nvidia.com/gpu": "1"}},
    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
}


@pytest.fixture
def restricted(cluster: LocalCluster, namespace: str) -> str:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    return namespace


def _create(cluster: LocalCluster, namespace: str, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=False)


def _waiting(cluster: LocalCluster, namespace: str, pod: str, reason: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        statuses = get_json(cluster, "pod", pod, "-n", namespace)["status"].get("containerStatuses") or []
        found.update(statuses[0] if statuses else {})
        return bool(statuses) and (statuses[0]["state"].get("waiting") or {}).get("reason") == reason

    wait_for(check, timeout_s=90, what=f"pod {pod} waiting with {reason}")
    return found


def test_real_node_is_ready_with_gpus_and_runs_only_what_asks_for_it(cluster: LocalCluster) -> None:
    node = get_json(cluster, "node", REAL_NODE)
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == str(REAL_NODE_GPUS)
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["metadata"]["labels"]["dialogue.dev/node-kind"] == "real"
    assert {k: REAL_NODE_TAINT[k] for k in ("key", "value", "effect")} in node["spec"]["taints"]
    internal = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    assert not internal.startswith("127.")  # the API server reaches the kubelet on an address it can use


def test_restricted_pod_runs_in_a_real_container_with_logs_exec_and_port_forward(
    cluster: LocalCluster, restricted: str
) -> None:
    ns = restricted
    cluster.kubectl("create", "secret", "generic", "greeting", "-n", ns, "--from-literal=text=hello from a Secret")
    pod = _pod("web", WEB, volumes=[{"name": "tmp", "emptyDir": {}}])
    created = _create(cluster, ns, pod)
    assert created.returncode == 0, created.stderr
    assert "Warning" not in created.stderr  # restricted admits it without a warning
    started = time.monotonic()
    cluster.kubectl("wait", "--for=condition=Ready", "pod/web", "-n", ns, "--timeout=90s", timeout_s=100)
    ready_s = time.monotonic() - started
    status = get_json(cluster, "pod", "web", "-n", ns)
    assert status["spec"]["nodeName"] == REAL_NODE
    assert status["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
    pod_ip = status["status"]["podIP"]

    # The kubelet ran what the spec says: the Secret's value in the environment, UID 1000, a read-only root.
    shown = cluster.kubectl("exec", "-n", ns, "web", "--", "sh", "-c", 'echo "$GREETING"; id -u; touch /x || true')
    assert shown.stdout.splitlines()[:2] == ["hello from a Secret", "1000"], shown
    assert "Read-only file system" in shown.stderr

    # The host reaches the pod on its pod IP (a namespace the harness made), and through port-forward.
    with urllib.request.urlopen(f"http://{pod_ip}:8000/", timeout=10) as resp:
        assert resp.status == 200
    port = free_port()
    forward = subprocess.Popen(
        [str(cluster.bins.kubectl), f"--kubeconfig={cluster.kubeconfig}", "port-forward", "-n", ns, "pod/web",
         f"{port}:8000"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/"), timeout_s=30, what="port-forward to answer")
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    logs = cluster.kubectl("logs", "-n", ns, "web").stdout
    assert '"GET / HTTP/1.1" 200' in logs  # the probe's and our requests, as the container printed them

    # In-cluster clients find the API server where every pod looks: the kubernetes Service.
    code = (
        "import os, ssl, urllib.request as u; d='/var/run/secrets/kubernetes.io/serviceaccount/';"
        "c=ssl.create_default_context(cafile=d+'ca.crt');"
        "r=u.Request('https://%s:%s/version' % (os.environ['KUBERNETES_SERVICE_HOST'], "
        "os.environ['KUBERNETES_SERVICE_PORT']), headers={'Authorization': 'Bearer '+open(d+'token').read()});"
        "print(u.urlopen(r, context=c).read().decode())"
    )
    version = json.loads(cluster.kubectl("exec", "-n", ns, "web", "--", "python3", "-c", code).stdout)
    assert version["major"] == "1" and version["minor"] == "35"
    print(f"real node: pod create -> Ready {ready_s:.1f} s")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_pod_breaking_restricted_is_refused(cluster: LocalCluster, restricted: str) -> None:
    pod = _pod("root", {"command": ["sleep", "60"], "securityContext": {"privileged": True}})
    del pod["spec"]["securityContext"]
    refused = _create(cluster, restricted, pod)
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    assert "privileged" in refused.stderr


def test_kubelet_reports_missing_secret_missing_image_and_crash_with_its_own_messages(
    cluster: LocalCluster, restricted: str
) -> None:
    ns = restricted
    env = [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "chat-keys", "key": "api-key"}}}]
    crash = "echo 'engine failed: weights truncated' > /dev/termination-log; exit 3"
    for obj in (
        _pod("no-secret", {"command": ["sleep", "60"], "env": env}),
        _pod("no-image", {"image": "ghcr.io/dialogue-operator/absent:0.0.0", "command": ["sleep", "60"]}),
        _pod("crash", {"command": ["sh", "-c", crash]}),
    ):
        assert _create(cluster, ns, obj).returncode == 0
    missing = _waiting(cluster, ns, "no-secret", "CreateContainerConfigError")
    assert missing["state"]["waiting"]["message"] == 'secret "chat-keys" not found'
    absent = _waiting(cluster, ns, "no-image", "ErrImageNeverPull")
    assert 'image "ghcr.io/dialogue-operator/absent:0.0.0" is not present' in absent["state"]["waiting"]["message"]
    crashed = _waiting(cluster, ns, "crash", "CrashLoopBackOff")
    assert crashed["lastState"]["terminated"]["exitCode"] == 3
    assert crashed["lastState"]["terminated"]["message"].strip() == "engine failed: weights truncated"

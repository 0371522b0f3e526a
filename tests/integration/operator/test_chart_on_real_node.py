"""The chart installed as a user installs it: the operator and the gateway run as containers of the project's own
images on the real node (kubelet + containerd), in namespaces that enforce the `restricted` Pod Security level,
with only the chart's ServiceAccounts and RBAC; the operator builds a runtime pod that the kubelet runs, and a
chat through the gateway's pod answers with the API key the model's Secret holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import images
from e2e.cluster.harness import LocalCluster
from e2e.cluster.realnode import ON_REAL_NODE, REAL_NODE
from tests.integration.operator.conftest import CHART, apply, bind_host_folder, get_json, wait_for, wait_ready

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"
KEY = "sk-real-node-test"


@pytest.fixture
def installed(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    """`helm install` into a fresh restricted namespace, the operator watching `namespace`; uninstalled after."""
    system = f"dialogue-system-{uuid.uuid4().hex[:5]}"
    release = f"real-{system[-5:]}"
    for ns in (system, namespace):
        cluster.kubectl("create", "namespace", ns, check=False)
        cluster.kubectl("label", "namespace", ns, RESTRICTED, "--overwrite")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    values = {
        **ON_REAL_NODE,
        "operator": {"watchNamespaces": [namespace], "resyncIntervalSeconds": 5},
        "gateway": {"enabled": True, "namespace": namespace, **ON_REAL_NODE},
    }
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    helm = str(cluster.bins.helm)
    done = subprocess.run(
        [helm, "install", release, str(CHART), "-n", system, "-f", "-", "--wait", "--timeout", "180s"],
        input=yaml.safe_dump(values), env=env, capture_output=True, text=True, timeout=200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + "\n" + cluster.kubectl("get", "events", "-n", system).stdout
    try:
        yield system
    finally:
        subprocess.run([helm, "uninstall", release, "-n", system, "--wait"], env=env, capture_output=True, timeout=120)
        cluster.kubectl("delete", "namespace", system, "--wait=false", check=False)


def _pods(cluster: LocalCluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["pods", "-n", namespace] + (["-l", selector] if selector else [])
    return [p for p in get_json(cluster, *args)["items"] if not p["metadata"].get("deletionTimestamp")]


def _chat(url: str, key: str) -> tuple[int, Any]:
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hello there"}], "max_tokens": 8}
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def test_chart_runs_operator_gateway_and_model_in_real_containers_under_restricted(
    cluster: LocalCluster, namespace: str, installed: str, tmp_path: Path
) -> None:
    system = installed
    components = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in _pods(cluster, system)}
    assert set(components) == {"operator", "gateway"}, components.keys()
    for component, pod in components.items():
        assert pod["spec"]["nodeName"] == REAL_NODE, component
        status = pod["status"]["containerStatuses"][0]
        assert status["containerID"].startswith("containerd://") and status["ready"], (component, status)
        assert status["image"] == images.image_ref(component)
        assert pod["spec"]["serviceAccountName"].startswith("real-"), component  # the chart's own accounts

    # A model the operator (in its container) turns into a runtime pod the kubelet runs: the sim engine from the
    # runtime image, its weights volume bound, its API key from a Secret.
    store = tmp_path / "store"
    store.mkdir()
    store.chmod(0o755)
    pv = bind_host_folder(cluster, namespace, "models", str(store))
    try:
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-keys"}, "stringData": {"k": KEY}}
        assert apply(cluster, namespace, secret).returncode == 0
        model = {
            "apiVersion": "dialogue.dev/v1alpha1",
            "kind": "DialogueModel",
            "metadata": {"name": "chat"},
            "spec": {
                "model": {"source": "pvc://models/sim"},
                "engine": {"kind": "sim"},
                "resources": {"gpus": 1},
                "scheduling": ON_REAL_NODE,
                "security": {"apiKeySecretRef": {"name": "chat-keys", "key": "k"}},
            },
        }
        created = apply(cluster, namespace, model)
        assert created.returncode == 0, created.stderr
        wait_ready(cluster, namespace, "chat", timeout_s=180)
        (runtime,) = _pods(cluster, namespace, "dialogue.dev/model=chat")
        assert runtime["spec"]["nodeName"] == REAL_NODE
        assert runtime["status"]["containerStatuses"][0]["containerID"].startswith("containerd://")
        assert runtime["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

        gateway_ip = components["gateway"]["status"]["podIP"]
        url = f"http://{gateway_ip}:8080"
        answer: list[Any] = []

        def answered() -> bool:
            code, body = _chat(url, KEY)
            answer[:] = [code, body]
            return code == 200

        wait_for(answered, timeout_s=60, what="a chat answer through the gateway pod")
        assert answer[1]["choices"][0]["message"]["content"], answer
        assert _chat(url, "sk-wrong")[0] == 401

        # What a user reads with kubectl works against these pods: the operator's log names the model.
        logs = cluster.kubectl("logs", "-n", system, components["operator"]["metadata"]["name"]).stdout
        assert "chat" in logs
    finally:
        cluster.kubectl("delete", "dm", "chat", "-n", namespace, "--wait=true", "--timeout=60s", check=False)
        cluster.kubectl("delete", "pv", pv, "--wait=false", check=False)

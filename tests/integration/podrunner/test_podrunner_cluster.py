"""The process-backed nodes against the real local control plane: pods really run as local processes.

Each test places its pods on `proc-cpu-0` (or `proc-gpu-0`) and checks what a user of the cluster would see:
HTTP served on the pod IP, readiness from the real probe, restarts, processes gone after deletion, env and
volumes reaching the process, image-table errors, Job completion, termination messages, `kubectl logs`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster.harness import LocalCluster

pytestmark = pytest.mark.cluster

CPU_NODE = "proc-cpu-0"
GPU_NODE = "proc-gpu-0"


def wait_for(predicate: Callable[[], Any], *, timeout_s: float, what: str, interval_s: float = 0.2) -> Any:
    """Polls until `predicate` returns something truthy, and returns it; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def apply(cluster: LocalCluster, namespace: str, manifest: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)


def get(cluster: LocalCluster, path: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = cluster.api().get_json(path, timeout_s=10)
    except Exception:  # a 404 while an object is created or deleted reads as "not there"
        return {}
    return result


def get_node_cidr(cluster: LocalCluster, node: str) -> str:
    return str(json.loads(cluster.kubectl("get", "node", node, "-o", "json").stdout)["spec"]["podCIDR"])


def pod(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return get(cluster, f"/api/v1/namespaces/{namespace}/pods/{name}")


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def container_status(obj: dict[str, Any]) -> dict[str, Any]:
    statuses = (obj.get("status") or {}).get("containerStatuses") or [{}]
    return statuses[0]


def pids_with_marker(marker: str) -> list[int]:
    """Pids of local processes whose environment holds `PODRUNNER_TEST_MARKER=<marker>`."""
    needle = f"PODRUNNER_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except OSError:
        return 0


def test_pod_serves_on_its_ip_is_ready_after_probe_restarts_and_stops(cluster: LocalCluster, namespace: str) -> None:
    marker = uuid.uuid4().hex
    apply(
        cluster,
        namespace,
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {CPU_NODE}}}
  terminationGracePeriodSeconds: 5
  containers:
  - name: web
    image: python:3.11-slim
    # Listens 5 s late: Ready must wait for the readiness probe, not for the process start.
    command: ["sh", "-c", "sleep 5; exec python3 -m http.server --bind $(POD_IP) 8080"]
    env:
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: PODRUNNER_TEST_MARKER, value: "{marker}"}}
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe: {{httpGet: {{path: /, port: http}}, periodSeconds: 1}}
""",
    )
    ip = wait_for(lambda: pod(cluster, namespace, "web").get("status", {}).get("podIP"), timeout_s=30, what="pod IP")
    node_cidr = ipaddress.ip_network(get_node_cidr(cluster, "proc-cpu-0"))
    assert ipaddress.ip_address(ip) in node_cidr and ip not in (str(node_cidr[0]), str(node_cidr[1]))
    url = f"http://{ip}:8080/"
    first = pod(cluster, namespace, "web")
    assert condition(first, "Ready").get("status") == "False"

    ready = wait_for(
        lambda: (p := pod(cluster, namespace, "web")) and condition(p, "Ready").get("status") == "True" and p,
        timeout_s=60,
        what="pod web Ready",
    )
    assert http_status(url) == 200
    started = container_status(ready)["state"]["running"]["startedAt"]
    assert _seconds_between(started, condition(ready, "Ready")["lastTransitionTime"]) >= 4, "Ready before listening"
    assert condition(ready, "ContainersReady")["status"] == "True"

    (pid,) = wait_for(lambda: pids_with_marker(marker), timeout_s=10, what="the container's process")
    os.kill(pid, signal.SIGKILL)
    restarted = wait_for(
        lambda: (p := pod(cluster, namespace, "web")) and container_status(p).get("restartCount") == 1 and p,
        timeout_s=30,
        what="restartCount 1 after the process was killed",
    )
    assert container_status(restarted)["lastState"]["terminated"]["exitCode"] == 137
    wait_for(lambda: http_status(url) == 200, timeout_s=60, what="the restarted server to answer")
    wait_for(
        lambda: condition(pod(cluster, namespace, "web"), "Ready").get("status") == "True",
        timeout_s=30,
        what="Ready again after the restart",
    )
    new_pids = pids_with_marker(marker)
    assert new_pids and pid not in new_pids

    cluster.kubectl("delete", "pod", "web", "-n", namespace, "--wait=true", "--timeout=60s")
    assert not pod(cluster, namespace, "web")
    wait_for(lambda: not pids_with_marker(marker), timeout_s=10, what="the process to be gone after deletion")
    assert http_status(url) == 0


def test_deployment_scaled_to_zero_stops_every_process(cluster: LocalCluster, namespace: str) -> None:
    marker = uuid.uuid4().hex
    apply(
        cluster,
        namespace,
        f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: sleeper}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: sleeper}}}}
  template:
    metadata: {{labels: {{app: sleeper}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {CPU_NODE}}}
      terminationGracePeriodSeconds: 3
      containers:
      - name: main
        image: busybox:1.36
        command: ["sleep", "3600"]
        env: [{{name: PODRUNNER_TEST_MARKER, value: "{marker}"}}]
""",
    )
    wait_for(lambda: len(pids_with_marker(marker)) == 2, timeout_s=60, what="2 running processes")
    path = f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dsleeper"
    pods = wait_for(
        lambda: (
            (items := get(cluster, path).get("items") or [])
            and {p["status"].get("phase") for p in items} == {"Running"}
            and items
        ),
        timeout_s=30,
        what="both pods Running",
    )
    assert len({p["status"]["podIP"] for p in pods}) == 2
    cluster.kubectl("scale", "deployment", "sleeper", "-n", namespace, "--replicas=0")
    wait_for(lambda: not pids_with_marker(marker), timeout_s=30, what="both processes to stop")
    wait_for(lambda: not get(cluster, path).get("items"), timeout_s=30, what="both pods to be deleted")


ENV_SCRIPT = """
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ns = open(sa + "/namespace").read()
req = urllib.request.Request(f"https://{host}:{port}/api/v1/namespaces/{ns}/secrets",
                             headers={"Authorization": "Bearer " + open(sa + "/token").read()})
try:
    urllib.request.urlopen(req, context=ssl.create_default_context(cafile=sa + "/ca.crt"), timeout=10)
    api = 200
except urllib.error.HTTPError as exc:
    api = exc.code
print(json.dumps({"password": os.environ.get("PASSWORD"), "greeting": open("/etc/cfg/greeting").read(),
                  "from_env_from": os.environ.get("CFG_greeting"), "arg": os.environ.get("ARG"), "api": api,
                  "cwd": os.getcwd()}))
open("/dev/termination-log", "w").write("engine failed: out of KV cache")
raise SystemExit(3)
"""


def test_secret_env_configmap_volume_token_and_termination_message(cluster: LocalCluster, namespace: str) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "stringData": {"password": "hunter2"}},
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"greeting": "hello"}},
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "envcheck"},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": CPU_NODE},
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.11-slim",
                            "workingDir": "/etc/cfg",
                            "command": ["python3", "-c", ENV_SCRIPT],
                            "env": [
                                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                                {"name": "ARG", "value": "$(PASSWORD)-x"},
                            ],
                            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
                            "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                        }
                    ],
                    "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}}],
                },
            },
        ],
    }
    apply(cluster, namespace, json.dumps(manifest))
    done = wait_for(
        lambda: (p := pod(cluster, namespace, "envcheck")) and p.get("status", {}).get("phase") == "Failed" and p,
        timeout_s=60,
        what="pod envcheck to fail with its exit code",
    )
    terminated = container_status(done)["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["message"] == "engine failed: out of KV cache"
    logs = cluster.kubectl("logs", "envcheck", "-n", namespace).stdout  # through the API server's log proxy
    seen = json.loads(logs.strip().splitlines()[-1])
    assert seen == {
        "password": "hunter2",
        "greeting": "hello",
        "from_env_from": "hello",
        "arg": "hunter2-x",
        "api": 403,  # a real token of the namespace's default ServiceAccount: authenticated, not authorized
        "cwd": "/etc/cfg",
    }
    assert not Path("/etc/cfg").exists(), "the mount point the runner created on the host was not removed"


def test_unknown_image_fails_to_pull_naming_the_table(cluster: LocalCluster, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        f"""
apiVersion: v1
kind: Pod
metadata: {{name: nginx}}
spec:
  nodeSelector: {{kubernetes.io/hostname: {CPU_NODE}}}
  containers: [{{name: main, image: "nginx:1.27"}}]
""",
    )
    waiting = wait_for(
        lambda: (
            container_status(pod(cluster, namespace, "nginx")).get("state", {}).get("waiting", {}).get("message")
            and container_status(pod(cluster, namespace, "nginx"))["state"]["waiting"]
        ),
        timeout_s=30,
        what="a waiting reason",
    )
    assert waiting["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "e2e/cluster/images.py" in waiting["message"]
    assert pod(cluster, namespace, "nginx")["status"]["phase"] == "Pending"
    logs = cluster.kubectl("logs", "nginx", "-n", namespace, check=False)
    assert logs.returncode != 0 and 'container "main" in pod "nginx" is waiting to start' in logs.stderr


def test_job_pod_with_init_container_on_the_gpu_node_succeeds(cluster: LocalCluster, namespace: str) -> None:
    apply(
        cluster,
        namespace,
        """
apiVersion: batch/v1
kind: Job
metadata: {name: once}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      nodeSelector: {dialogue.dev/node-kind: process}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      volumes: [{name: scratch, emptyDir: {}}]
      initContainers:
      - name: prepare
        image: busybox
        command: [sh, -c, "echo prepared > /scratch/note"]
        volumeMounts: [{name: scratch, mountPath: /scratch}]
      containers:
      - name: main
        image: python:3.11
        command: [python3, -c, "import os; print(open('/scratch/note').read().strip(), 'on', os.environ['NODE'])"]
        env: [{name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}]
        resources: {limits: {nvidia.com/gpu: 1}}
        volumeMounts: [{name: scratch, mountPath: /scratch}]
""",
    )
    wait_for(
        lambda: (
            condition(get(cluster, f"/apis/batch/v1/namespaces/{namespace}/jobs/once"), "Complete").get("status")
            == "True"
        ),
        timeout_s=60,
        what="Job once to complete",
    )
    (job_pod,) = get(cluster, f"/api/v1/namespaces/{namespace}/pods?labelSelector=job-name%3Donce")["items"]
    assert job_pod["spec"]["nodeName"] == GPU_NODE
    assert job_pod["status"]["phase"] == "Succeeded"
    assert container_status(job_pod)["state"]["terminated"]["reason"] == "Completed"
    logs = cluster.kubectl("logs", job_pod["metadata"]["name"], "-n", namespace).stdout
    assert logs.strip() == f"prepared on {GPU_NODE}"  # the init container ran first, sharing the emptyDir
    assert job_pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def _seconds_between(earlier: str, later: str) -> float:
    def parse(stamp: str) -> float:
        return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))

    return parse(later) - parse(earlier)


def test_claim_bound_to_a_host_path_volume_is_that_directory(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    pv_name = f"pv-{namespace}"[:63]
    data = tmp_path / "volume"
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv_name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "hostPath": {"path": str(data), "type": "DirectoryOrCreate"},
                    "claimRef": {"namespace": namespace, "name": "models"},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "models", "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "",
                    "volumeName": pv_name,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "writer", "namespace": namespace},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": CPU_NODE},
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": "busybox",
                            "command": ["sh", "-c", "echo weights > /models/model.bin"],
                            "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                        }
                    ],
                    "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
                },
            },
        ],
    }
    try:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))
        wait_for(
            lambda: pod(cluster, namespace, "writer").get("status", {}).get("phase") == "Succeeded",
            timeout_s=60,
            what="pod writer to succeed",
        )
        assert (data / "model.bin").read_text() == "weights\n"
    finally:
        cluster.kubectl("delete", "pv", pv_name, "--wait=false", "--ignore-not-found", check=False)


def test_runtime_pod_volume_layout(cluster: LocalCluster, namespace: str) -> None:
    """The volumes of the operator's runtime pods: engine config, /dev/shm in memory, a private /tmp, /models."""
    marker = uuid.uuid4().hex
    script = (
        f"cat /etc/dialogue/engine.json && echo tmp > /tmp/{marker} && echo shm > /dev/shm/{marker} "
        f"&& ls /models && cat /tmp/{marker} /dev/shm/{marker}"
    )
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "engine"}, "data": {"engine.json": "{}"}},
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "layout"},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": CPU_NODE},
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "engine",
                            "image": "busybox",
                            "command": ["sh", "-c", script],
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/dialogue", "readOnly": True},
                                {"name": "shm", "mountPath": "/dev/shm"},
                                {"name": "models", "mountPath": "/models"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "engine"}},
                        {"name": "shm", "emptyDir": {"medium": "Memory"}},
                        {"name": "models", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        ],
    }
    apply(cluster, namespace, json.dumps(manifest))
    done = wait_for(
        lambda: (
            (p := pod(cluster, namespace, "layout"))
            and p.get("status", {}).get("phase") in ("Succeeded", "Failed")
            and p
        ),
        timeout_s=60,
        what="pod layout to finish",
    )
    assert done["status"]["phase"] == "Succeeded", container_status(done)
    assert cluster.kubectl("logs", "layout", "-n", namespace).stdout == "{}tmp\nshm\n"
    assert not Path(f"/tmp/{marker}").exists() and not Path(f"/dev/shm/{marker}").exists()  # private to the pod

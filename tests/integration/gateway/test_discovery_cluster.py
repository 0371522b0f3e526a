"""Discovery on the local cluster: sim pods on the process-backed node `proc-cpu-0` enter the gateway's rotation
when Ready, leave it when deleted, API keys come from the DialogueModel's Secret, and a request held at zero
annotates the DialogueModel and is answered once a pod is Ready again. The gateway runs with the chart's own
ServiceAccount and RBAC (a token of that account), so the chart's permissions are proven, not assumed."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from dialogue_runtime.gateway.balancer import replica_id

from tests.integration.gateway.conftest import Proc, Procs, free_port, wait_http

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[3]
ANNOTATION = "dialogue.dev/scale-from-zero-requested-at"
KEY = "sk-cluster-test"
ENDPOINTS_RE = re.compile(r'dialogue_gateway_endpoints\{model="chat",namespace="([^"]+)",variant="base"\} ([0-9.]+)')


def apply(cluster: object, namespace: str, manifest: dict[str, object]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))  # type: ignore[attr-defined]


def sim_pod(name: str, variant: str = "base") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"dialogue.dev/model": "chat", "dialogue.dev/variant": variant}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "proc-cpu-0"},
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": "engine",
                    "image": "ghcr.io/dialogue-operator/gateway:0.1.0",  # the project venv runs the sim
                    "command": ["python3", "-m", "dialogue_runtime.sim"],
                    "args": ["--host", "$(POD_IP)", "--port", "8000", "--served-model-name", "chat-sim"],
                    "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
                    "ports": [{"name": "http", "containerPort": 8000}],
                    "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 1},
                }
            ],
        },
    }


STARTED = time.monotonic()


def step(what: str) -> None:
    """Progress with elapsed time, shown with the captured output if the test fails."""
    print(f"[{time.monotonic() - STARTED:7.1f} s] {what}", flush=True)


def wait_for(predicate, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


def pod_ip(cluster: object, namespace: str, name: str) -> str | None:
    out = cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json", check=False)  # type: ignore[attr-defined]
    if out.returncode != 0:
        return None
    pod = json.loads(out.stdout)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", []))
    return pod["status"].get("podIP") if ready else None


async def ask(session: aiohttp.ClientSession, gateway: str, key: str = KEY, conv: str = "c") -> tuple[int, str]:
    body = {"model": "chat-sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
    headers = {"Authorization": f"Bearer {key}", "X-Session-ID": conv}
    async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=headers) as response:
        await response.read()
        return response.status, response.headers.get("X-Dialogue-Replica", "")


def test_pods_enter_and_leave_rotation_keys_from_secret_hold_annotates(
    cluster: object, namespace: str, procs: Procs
) -> None:
    chart_crds = ROOT / "charts" / "dialogue-operator" / "crds"
    crds = chart_crds if chart_crds.is_dir() else ROOT / "crds"
    step("applying the CRD, a Secret, a DialogueModel and two sim pods")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))  # type: ignore[attr-defined]
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chat-keys"},
                               "stringData": {"api-key": KEY}})  # fmt: skip
    model = {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": "chat"},
        "spec": {
            "model": {"source": "pvc://models/smol", "servedName": "chat-sim"},
            "engine": {"kind": "sim"},
            "replicas": 0,
            "security": {"apiKeySecretRef": {"name": "chat-keys", "key": "api-key"}},
        },
    }
    apply(cluster, namespace, model)
    for name in ("sim-a", "sim-b"):
        apply(cluster, namespace, sim_pod(name))
    ips = {
        name: wait_for(lambda n=name: pod_ip(cluster, namespace, n), 90, f"{name} Ready") for name in ("sim-a", "sim-b")
    }

    step(f"pods Ready: {ips}; starting the gateway")
    gateway = start_k8s_gateway(cluster, namespace, procs, "gateway-k8s", "--hold-timeout-s", "120")

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            step("gateway up")
            # Both pods discovered; keys come from the Secret.
            assert (await ask(session, gateway.url, key="sk-wrong"))[0] == 401
            replicas = {(await ask(session, gateway.url, conv=f"c{i}"))[1] for i in range(30)}
            assert replicas == {replica_id(f"http://{ip}:8000") for ip in ips.values()}

            step("both pods in rotation; deleting sim-a under steady load")
            # A pod deleted under steady load leaves the rotation and no request fails.
            stop, failures, served = asyncio.Event(), [], [0]

            async def load(i: int) -> None:
                while not stop.is_set():
                    status, _ = await ask(session, gateway.url, conv=f"load-{i}-{served[0]}")
                    if status == 200:
                        served[0] += 1
                    else:
                        failures.append(status)

            loaders = [asyncio.create_task(load(i)) for i in range(6)]
            await asyncio.sleep(1.0)
            await asyncio.to_thread(cluster.kubectl, "delete", "pod", "sim-a", "-n", namespace, "--wait=false")  # type: ignore[attr-defined]
            await wait_metric(session, gateway.url, 1)
            await asyncio.sleep(3.0)  # the pod's grace period runs out while the load goes on
            stop.set()
            await asyncio.gather(*loaders)
            assert failures == [], f"{len(failures)} requests failed while a pod was deleted: {failures[:5]}"
            assert served[0] > 10
            after = [await ask(session, gateway.url, conv=f"c{i}") for i in range(20)]
            assert {status for status, _ in after} == {200}
            assert {r for _, r in after} == {replica_id(f"http://{ips['sim-b']}:8000")}

            step("sim-a out of rotation; changing the CRD's schema under steady load")
            # A CRD update (helm upgrade) re-initialises its storage: the relist answers 429 for a moment, which must
            # not read as "no models" (every request would get 404 until the next relist).
            stop, failures, served = asyncio.Event(), [], [0]
            loaders = [asyncio.create_task(load(i)) for i in range(4)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(touch_crd_schema, cluster)
            await asyncio.sleep(6.0)  # the watch closes, the relist is refused, the gateway retries after 2 s
            stop.set()
            await asyncio.gather(*loaders)
            await asyncio.to_thread(
                cluster.kubectl,  # type: ignore[attr-defined]
                "apply", "--server-side", "--force-conflicts", "-f", str(crds),
            )  # fmt: skip
            assert failures == [], f"{len(failures)} requests failed while the CRD was updated: {failures[:5]}"
            assert served[0] > 10

            step("CRD updated without a failed request; deleting sim-b")
            # At zero, a request is held, the DialogueModel is annotated, and a new pod answers it.
            cluster.kubectl("delete", "pod", "sim-b", "-n", namespace, "--wait=false")  # type: ignore[attr-defined]
            await wait_metric(session, gateway.url, 0)
            held = asyncio.create_task(ask(session, gateway.url))
            annotation = await asyncio.to_thread(
                wait_for, lambda: annotation_of(cluster, namespace), 30, "the scale-from-zero annotation"
            )
            assert annotation.endswith("Z")
            assert not held.done()
            step(f"held and annotated at {annotation}; starting sim-c")
            apply(cluster, namespace, sim_pod("sim-c"))
            status, replica = await asyncio.wait_for(held, timeout=120)
            assert status == 200
            ip_c = await asyncio.to_thread(wait_for, lambda: pod_ip(cluster, namespace, "sim-c"), 30, "sim-c")
            assert replica == replica_id(f"http://{ip_c}:8000")

            step("held request answered by sim-c; a canary pod and status weights base=0, canary=100")
            # Variant weights come from the DialogueModel's status.
            apply(cluster, namespace, sim_pod("sim-canary", variant="canary"))
            ip_canary = await asyncio.to_thread(
                wait_for, lambda: pod_ip(cluster, namespace, "sim-canary"), 90, "sim-canary Ready"
            )
            weights = {"status": {"variants": [{"name": "base", "weight": 0}, {"name": "canary", "weight": 100}]}}
            await asyncio.to_thread(
                cluster.kubectl,  # type: ignore[attr-defined]
                "patch", "dialoguemodel", "chat", "-n", namespace, "--subresource=status", "--type=merge",
                "-p", json.dumps(weights),
            )  # fmt: skip
            canary = replica_id(f"http://{ip_canary}:8000")
            for _ in range(150):
                if (await ask(session, gateway.url, conv="probe"))[1] == canary:
                    break
                await asyncio.sleep(0.2)
            answers = [await ask(session, gateway.url, conv=f"v{i}") for i in range(20)]
            assert {r for _, r in answers} == {canary}, "status weights base=0, canary=100 not followed"

            step("weights followed; deleting the DialogueModel")
            # Deleting the DialogueModel removes its metric series.
            cluster.kubectl("delete", "dialoguemodel", "chat", "-n", namespace)  # type: ignore[attr-defined]
            for _ in range(100):
                async with session.get(gateway.url + "/metrics") as response:
                    if f'namespace="{namespace}"' not in await response.text():
                        break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("series of the deleted DialogueModel are still exported")

    asyncio.run(scenario())
    gateway.stop()


def test_a_model_whose_api_key_secret_is_missing_answers_503_naming_it(
    cluster: object, namespace: str, procs: Procs
) -> None:
    """Not 200 (served unauthenticated) and not 401 (no key the client could send would do): 503 naming the Secret."""
    chart_crds = ROOT / "charts" / "dialogue-operator" / "crds"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(chart_crds))  # type: ignore[attr-defined]
    model = {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": "chat"},
        "spec": {
            "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main", "servedName": "chat-sim"},
            "engine": {"kind": "sim"},
            "replicas": 0,
            "security": {"apiKeySecretRef": {"name": "no-such-keys"}},
        },
    }
    apply(cluster, namespace, model)
    apply(cluster, namespace, sim_pod("sim-a"))
    wait_for(lambda: pod_ip(cluster, namespace, "sim-a"), 90, "sim-a Ready")
    gateway = start_k8s_gateway(cluster, namespace, procs, "gateway-missing-secret")

    async def scenario() -> None:
        body = {"model": "chat-sim", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": f"Bearer {KEY}"}):
                async with session.post(f"{gateway.url}/v1/chat/completions", json=body, headers=headers) as resp:
                    error = (await resp.json())["error"]
                    assert resp.status == 503, (resp.status, error)
                    assert error["code"] == "api_key_secret_missing" and "no-such-keys" in error["message"], error

    asyncio.run(scenario())


def start_k8s_gateway(cluster: object, namespace: str, procs: Procs, name: str, *extra: str) -> Proc:
    """The gateway discovering `namespace` from the API server as the chart's ServiceAccount, once it answers."""
    port = free_port("127.0.0.1")
    kubeconfig = str(chart_rbac_kubeconfig(cluster, namespace, procs.workdir))
    args = [sys.executable, "-m", "dialogue_runtime.gateway", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--kubeconfig", kubeconfig, "--namespace", namespace, "--log-level", "WARNING", *extra]
    gateway = procs.spawn(args, f"http://127.0.0.1:{port}", name)
    wait_http(gateway.url + "/healthz", proc=gateway.popen)
    return gateway


def chart_rbac_kubeconfig(cluster: object, namespace: str, workdir: Path) -> Path:
    """A kubeconfig for the chart's gateway ServiceAccount, bound by the chart's own (namespaced) RBAC.

    The gateway then runs with exactly the permissions the chart grants, so missing RBAC fails this test.
    """
    chart = ROOT / "charts" / "dialogue-operator"
    rendered = subprocess.run(
        [str(cluster.bins.helm), "template", "gw", str(chart), "--namespace", namespace,  # type: ignore[attr-defined]
         "--set", "gateway.enabled=true", "--set", f"gateway.namespace={namespace}",
         "--show-only", "templates/gateway-serviceaccount.yaml", "--show-only", "templates/gateway-rbac.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=rendered)  # type: ignore[attr-defined]
    account = next(d["metadata"]["name"] for d in yaml.safe_load_all(rendered) if d and d["kind"] == "ServiceAccount")
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration", "1h").stdout.strip()  # type: ignore[attr-defined]
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())  # type: ignore[attr-defined]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "gateway", "user": {"token": token}}],
        "contexts": [{"name": "gateway", "context": {"cluster": "local", "user": "gateway"}}],
        "current-context": "gateway",
    }
    path = workdir / f"gateway-{namespace}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def touch_crd_schema(cluster: object) -> None:
    """Changes a field description of the DialogueModel CRD (as an upgrade would), which re-initialises its storage."""
    patch = [
        {
            "op": "replace",
            "path": "/spec/versions/0/schema/openAPIV3Schema/description",
            "value": f"DialogueModel (schema touched by a test at {time.time():.0f})",
        }
    ]
    cluster.kubectl("patch", "crd", "dialoguemodels.dialogue.dev", "--type=json", "-p", json.dumps(patch))  # type: ignore[attr-defined]


def annotation_of(cluster: object, namespace: str) -> str | None:
    out = cluster.kubectl("get", "dialoguemodel", "chat", "-n", namespace, "-o", "json")  # type: ignore[attr-defined]
    return json.loads(out.stdout)["metadata"].get("annotations", {}).get(ANNOTATION)


async def wait_metric(session: aiohttp.ClientSession, gateway: str, expected: int) -> None:
    for _ in range(150):
        async with session.get(gateway + "/metrics") as response:
            found = ENDPOINTS_RE.search(await response.text())
        if (float(found.group(2)) if found else 0.0) == expected:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the gateway never saw {expected} ready endpoints")

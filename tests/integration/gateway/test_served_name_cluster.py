"""Two DialogueModels of one namespace with one served name, seen by the gateway on the local cluster: the name
reaches the older model's pods only, the newer answers to its own name, and the name moves when the older goes."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from dialogue_runtime.gateway.balancer import replica_id

from tests.integration.gateway.conftest import Procs
from tests.integration.gateway.test_discovery_cluster import (
    ROOT,
    apply,
    pod_ip,
    sim_pod,
    start_k8s_gateway,
    wait_for,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]


def model(name: str) -> dict[str, object]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": name},
        "spec": {
            "model": {"source": "pvc://models/smol", "servedName": "chat-sim"},
            "engine": {"kind": "sim"},
            "replicas": 0,
        },
    }


def pod_of(model_name: str, pod_name: str) -> dict[str, object]:
    pod = sim_pod(pod_name)
    pod["metadata"]["labels"]["dialogue.dev/model"] = model_name  # type: ignore[index]
    return pod


async def replicas_for(session: aiohttp.ClientSession, gateway: str, requested: str) -> set[str]:
    seen: set[str] = set()
    for i in range(12):
        body = {"model": requested, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}
        headers = {"X-Session-ID": f"c{i}"}
        async with session.post(f"{gateway}/v1/chat/completions", json=body, headers=headers) as response:
            await response.read()
            assert response.status == 200, f"{requested}: HTTP {response.status}"
            seen.add(response.headers.get("X-Dialogue-Replica", ""))
    return seen


def test_served_name_reaches_the_older_model_until_it_is_deleted(cluster: object, namespace: str, procs: Procs) -> None:
    crds = ROOT / "charts" / "dialogue-operator" / "crds"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))  # type: ignore[attr-defined]
    # The newer model's name sorts first: only the creation time can send the name to the older.
    apply(cluster, namespace, model("zz-older"))
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    apply(cluster, namespace, model("aa-newer"))
    apply(cluster, namespace, pod_of("zz-older", "sim-older"))
    apply(cluster, namespace, pod_of("aa-newer", "sim-newer"))
    ips = {n: wait_for(lambda n=n: pod_ip(cluster, namespace, n), 90, f"{n} Ready") for n in ("sim-older", "sim-newer")}
    older, newer = (replica_id(f"http://{ips[n]}:8000") for n in ("sim-older", "sim-newer"))

    gateway = start_k8s_gateway(cluster, namespace, procs, "gateway-served-name")

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # discovery fills in as its watches deliver
                async with session.get(gateway.url + "/healthz") as response:
                    models = (await response.json()).get("models")
                async with session.get(gateway.url + "/v1/models") as response:
                    listed = [m for m in (await response.json())["data"] if m["ready"]]
                if models == 2 and listed:
                    break
                await asyncio.sleep(0.2)
            assert [m["id"] for m in listed] == ["chat-sim"], "the served name is listed once, for the older"
            assert await replicas_for(session, gateway.url, "chat-sim") == {older}
            assert await replicas_for(session, gateway.url, "aa-newer") == {newer}

            await asyncio.to_thread(cluster.kubectl, "delete", "dialoguemodel", "zz-older", "-n", namespace)  # type: ignore[attr-defined]
            for _ in range(100):
                if await replicas_for(session, gateway.url, "chat-sim") == {newer}:
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("the served name did not move to the remaining model")

    asyncio.run(scenario())
    gateway.stop()

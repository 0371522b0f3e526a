"""Helpers of the end-to-end autoscaling test: cluster reads, a timeline of replica counts, the gateway process and a
bounded closed-loop load through it (loopback only)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from e2e.cluster.harness import LocalCluster
from tests.integration.gateway.conftest import Proc, Procs, free_port, wait_http
from tests.integration.gateway.test_discovery_cluster import chart_rbac_kubeconfig

STARTED = time.monotonic()


def step(what: str) -> None:
    """Progress with elapsed time (shown with the captured output if the test fails)."""
    print(f"[{time.monotonic() - STARTED:7.1f} s] {what}", flush=True)


def get_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    proc = cluster.kubectl("get", *args, "-o", "json", check=False, timeout_s=30)
    if proc.returncode != 0:
        return {}
    loaded: dict[str, Any] = json.loads(proc.stdout)
    return loaded


@dataclass
class Timeline:
    """Replica counts seen over time: the Deployment's spec/ready replicas and the autoscaler's decision."""

    cluster: LocalCluster
    namespace: str
    model: str
    points: list[tuple[float, int, int, int | None, str]] = field(default_factory=list)

    def sample(self) -> tuple[int, int, int | None, str]:
        """(Deployment spec.replicas, readyReplicas, status.autoscaling.desiredReplicas, its reason), recorded."""
        deployment = get_json(self.cluster, "deployment", f"{self.model}-base", "-n", self.namespace)
        dm = get_json(self.cluster, "dialoguemodel", self.model, "-n", self.namespace)
        autoscaling = (dm.get("status") or {}).get("autoscaling") or {}
        spec = int((deployment.get("spec") or {}).get("replicas", -1))
        ready = int((deployment.get("status") or {}).get("readyReplicas") or 0)
        desired = autoscaling.get("desiredReplicas")
        reason = str(autoscaling.get("reason", ""))
        last = self.points[-1][1:] if self.points else None
        if last != (spec, ready, desired, reason):
            self.points.append((time.monotonic(), spec, ready, desired, reason))
            step(f"deployment replicas={spec} ready={ready}; autoscaler desired={desired} ({reason})")
        return spec, ready, desired, reason

    def wait(self, what: str, ok: Callable[[int, int, int | None, str], bool], timeout_s: float) -> float:
        """Poll until `ok(spec, ready, desired, reason)`; returns the monotonic time it first held."""
        deadline = time.monotonic() + timeout_s
        while True:
            if ok(*self.sample()):
                return time.monotonic()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; seen: {self.history()}")
            time.sleep(0.5)

    def history(self) -> list[tuple[int, int]]:
        """(spec.replicas, readyReplicas) in the order seen, without repeats."""
        out: list[tuple[int, int]] = []
        for _, spec, ready, _, _ in self.points:
            if not out or out[-1] != (spec, ready):
                out.append((spec, ready))
        return out


def model_events(cluster: LocalCluster, namespace: str, model: str) -> list[dict[str, Any]]:
    """Events about the DialogueModel, oldest first."""
    items = get_json(cluster, "events", "-n", namespace, "--field-selector", f"involvedObject.name={model}")
    events = [e for e in items.get("items", []) if (e.get("involvedObject") or {}).get("kind") == "DialogueModel"]
    return sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def start_gateway(cluster: LocalCluster, namespace: str, procs: Procs, hold_timeout_s: float) -> Proc:
    """The real gateway, discovering pods in `namespace` with the chart's gateway ServiceAccount and RBAC."""
    port = free_port("127.0.0.1")
    kubeconfig = str(chart_rbac_kubeconfig(cluster, namespace, procs.workdir))
    args = [sys.executable, "-m", "dialogue_runtime.gateway", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--kubeconfig", kubeconfig, "--namespace", namespace, "--log-level", "WARNING"]
    args += ["--hold-timeout-s", str(hold_timeout_s)]
    gateway = procs.spawn(args, f"http://127.0.0.1:{port}", "gateway")
    wait_http(gateway.url + "/healthz", timeout_s=60, proc=gateway.popen)
    return gateway


def gateway_knows(gateway: Proc, served_name: str) -> bool:
    try:
        with urllib.request.urlopen(gateway.url + "/v1/models", timeout=5) as response:
            return served_name in {m["id"] for m in json.loads(response.read())["data"]}
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return False


def gateway_gauge(gateway: Proc, name: str, namespace: str, model: str) -> float:
    """A per-model gauge of the gateway's /metrics (0 when absent)."""
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    prefix = f"{name}{{"
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix) and f'namespace="{namespace}"' in line and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Outcome:
    """One request's HTTP status and how long it took."""

    status: int
    seconds: float


async def chat(session: aiohttp.ClientSession, gateway: str, served_name: str, conv: str, max_tokens: int) -> Outcome:
    """One chat completion through the gateway; any failure to get a response is recorded as status 0."""
    body = {"model": served_name, "messages": [{"role": "user", "content": f"hello from {conv}"}]}
    body["max_tokens"] = max_tokens  # type: ignore[assignment]
    started = time.monotonic()
    try:
        async with session.post(f"{gateway}/v1/chat/completions", json=body, headers={"X-Session-ID": conv}) as resp:
            await resp.read()
            return Outcome(resp.status, time.monotonic() - started)
    except (aiohttp.ClientError, TimeoutError) as exc:
        step(f"request {conv} failed without a response: {type(exc).__name__}: {exc}")
        return Outcome(0, time.monotonic() - started)


class Load:
    """Closed-loop load in a thread of its own: `clients` conversations, each sending one request after another
    until `stop()` or `deadline_s`; every request's outcome is kept."""

    def __init__(
        self, gateway: str, served_name: str, clients: int, max_tokens: int, deadline_s: float, once: bool = False
    ) -> None:
        self.outcomes: list[Outcome] = []
        self.once = once
        self._stop = threading.Event()
        self._args = (gateway, served_name, clients, max_tokens, time.monotonic() + deadline_s)
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="load", daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        gateway, served_name, clients, max_tokens, end = self._args
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:

            async def client(i: int) -> None:
                n = 0
                while not self._stop.is_set() and time.monotonic() < end:
                    self.outcomes.append(await chat(session, gateway, served_name, f"load-{i}-{n}", max_tokens))
                    n += 1
                    if self.once:
                        return

            await asyncio.gather(*(client(i) for i in range(clients)))

    def stop(self, timeout_s: float = 200) -> list[Outcome]:
        """Stop sending, wait for the requests in flight, return every outcome."""
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise AssertionError(f"the load's requests did not finish within {timeout_s:.0f} s of stopping")
        return self.outcomes

    def done(self) -> bool:
        return not self._thread.is_alive()


def one_request(gateway: str, served_name: str, max_tokens: int, timeout_s: float) -> Load:
    """A single request in the background (a Load of one client that stops after its first request)."""
    return Load(gateway, served_name, 1, max_tokens, deadline_s=timeout_s, once=True)

"""The autoscaling scenario's parts, shared by its end-to-end test and benchmark: the DialogueModel, cluster reads, a
timeline of replica counts, gateway gauges and a bounded closed-loop load through the gateway (loopback only)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from e2e.cluster.harness import LocalCluster

STARTED = time.monotonic()
MODEL = "chat"
MAX_REPLICAS = 3
TARGET_IN_FLIGHT = 2
CLIENTS = 6  # in flight at all times: ceil(6 / 2) = 3 replicas wanted
SCALE_TO_ZERO_AFTER_S = 30
MAX_TOKENS = 16  # ~0.8 s per request at 20 tok/s when the replica is not saturated
# Windows shortened from the defaults (60 s stable, 600 s scale-down stabilization) so the scenario fits in minutes.
POLICY = "stable_window_s=6,panic_window_s=3,scale_down_stabilization_s=6"
ANNOTATION = "dialogue.dev/scale-from-zero-requested-at"


def dialogue_model() -> dict[str, object]:
    """A sim-engine model on the process-backed node, autoscaled 0..3 at 2 in flight per replica. Each replica decodes
    two sequences at 20 tok/s (40 tok/s in all), so six conversations in a closed loop saturate it."""
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": MODEL},
        "spec": {
            "model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"},
            "engine": {
                "kind": "sim",
                "sim": {"decodeTokensPerSecond": 20, "maxDecodeTokensPerSecond": 40, "maxBatch": 2},
            },
            "scheduling": {"nodeSelector": {"dialogue.dev/node-kind": "process"}},
            "autoscaling": {
                "minReplicas": 0,
                "maxReplicas": MAX_REPLICAS,
                "targetInFlightPerReplica": TARGET_IN_FLIGHT,
                "scaleToZeroAfterSeconds": SCALE_TO_ZERO_AFTER_S,
            },
            "security": {"networkPolicy": False},
        },
    }


def pods(cluster: LocalCluster, namespace: str) -> list[str]:
    """The model's pods, terminating ones included."""
    items = get_json(cluster, "pods", "-n", namespace, "-l", f"dialogue.dev/model={MODEL}").get("items", [])
    return [p["metadata"]["name"] for p in items]


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


def gateway_knows(gateway_url: str, served_name: str) -> bool:
    """Whether the gateway lists `served_name` in /v1/models (it discovered the DialogueModel)."""
    try:
        with urllib.request.urlopen(gateway_url + "/v1/models", timeout=5) as response:
            return served_name in {m["id"] for m in json.loads(response.read())["data"]}
    except (urllib.error.URLError, OSError, KeyError, ValueError):
        return False


def gateway_gauge(gateway_url: str, name: str, namespace: str, model: str) -> float:
    """A per-model gauge of the gateway's /metrics (0 when absent)."""
    with urllib.request.urlopen(gateway_url + "/metrics", timeout=5) as response:
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
        self, gateway: str, served_name: str, clients: int, max_tokens: int, deadline_s: float, *, once: bool = False
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


def held_request_answered(cluster: LocalCluster, namespace: str, gateway_url: str, timeline: Timeline) -> float:
    """Send one request at zero; check it is held (gateway gauge, annotation) until a replica is Ready and answers.
    Returns the seconds the client waited."""
    request = one_request(gateway_url, MODEL, MAX_TOKENS, timeout_s=200)
    deadline = time.monotonic() + 20
    while gateway_gauge(gateway_url, "dialogue_gateway_held_requests", namespace, MODEL) < 1 and not request.done():
        if time.monotonic() > deadline:
            raise AssertionError("the gateway never counted the request at zero as held")
        time.sleep(0.2)
    if request.done():
        raise AssertionError(f"a request at zero was answered without a replica: {request.outcomes}")
    timeline.wait("a replica scaled from zero", lambda spec, ready, desired, reason: spec >= 1, timeout_s=60)
    outcomes = request.stop(timeout_s=200)
    if [o.status for o in outcomes] != [200]:
        raise AssertionError(f"the held request failed: {outcomes}")
    annotations = get_json(cluster, "dialoguemodel", MODEL, "-n", namespace)["metadata"].get("annotations") or {}
    if ANNOTATION not in annotations:
        raise AssertionError("the gateway did not annotate the DialogueModel while holding")
    return outcomes[0].seconds


@dataclass
class Numbers:
    """What the scenario measured (seconds) and every HTTP status it saw."""

    first_from_zero_s: float = 0.0
    scale_up_s: float = 0.0  # load start -> MAX_REPLICAS Ready
    requests_under_load: int = 0
    shrink_to_one_s: float = 0.0  # load end -> one replica
    to_zero_s: float = 0.0  # load end -> zero replicas
    second_from_zero_s: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)


def run_scenario(cluster: LocalCluster, namespace: str, gateway_url: str) -> tuple[Numbers, Timeline]:
    """With the DialogueModel applied and the gateway and operator running: at zero, a held request scales from zero;
    CLIENTS conversations grow the replicas to MAX_REPLICAS; idle shrinks them to one, then to zero after the idle
    period; a request at zero is held and answered again. Raises AssertionError on any deviation or failed request."""
    numbers = Numbers()
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + 60
    while not gateway_knows(gateway_url, MODEL):
        if time.monotonic() > deadline:
            raise AssertionError(f"the gateway never discovered {MODEL}")
        time.sleep(0.3)
    timeline = Timeline(cluster, namespace, MODEL)
    timeline.wait(
        "the autoscaler's first decision: zero replicas (minReplicas 0, no load)",
        lambda spec, ready, desired, reason: spec == 0 and desired == 0,
        timeout_s=90,
    )

    step("first request at zero: held until a replica is Ready")
    numbers.first_from_zero_s = held_request_answered(cluster, namespace, gateway_url, timeline)
    statuses[200] = 1
    step(f"held request answered after {numbers.first_from_zero_s:.1f} s")

    step(f"load: {CLIENTS} conversations in a closed loop")
    load = Load(gateway_url, MODEL, CLIENTS, MAX_TOKENS, deadline_s=150)
    load_started = time.monotonic()
    grown = timeline.wait(
        f"{MAX_REPLICAS} Ready replicas under load",
        lambda spec, ready, desired, reason: spec == MAX_REPLICAS and ready == MAX_REPLICAS,
        timeout_s=120,
    )
    numbers.scale_up_s = grown - load_started
    time.sleep(3)  # the new replicas serve part of the load
    outcomes = load.stop()
    load_stopped = time.monotonic()
    for o in outcomes:
        statuses[o.status] = statuses.get(o.status, 0) + 1
    numbers.requests_under_load = len(outcomes)
    failed = [o for o in outcomes if o.status != 200]
    if failed:
        raise AssertionError(f"{len(failed)} of {len(outcomes)} requests under load failed: {failed[:5]}")
    if len(outcomes) < 3 * CLIENTS:
        raise AssertionError(f"only {len(outcomes)} requests were served under load")
    step(f"{len(outcomes)} requests under load, all 200; 1 -> {MAX_REPLICAS} in {numbers.scale_up_s:.1f} s")

    one = timeline.wait(
        "the replicas to shrink to one after the load stopped",
        lambda spec, ready, desired, reason: spec == 1 and desired == 1,
        timeout_s=90,
    )
    numbers.shrink_to_one_s = one - load_stopped
    step(f"shrunk to one replica {numbers.shrink_to_one_s:.1f} s after the load stopped")
    # The ScaleToZero decision lasts one 1 s tick; a sample slower than that (two kubectl calls on a loaded machine)
    # sees the next one instead: Idle at zero.
    zero = timeline.wait(
        "scale to zero after the idle period",
        lambda spec, ready, desired, reason: spec == 0 and desired == 0 and reason in ("ScaleToZero", "Idle"),
        timeout_s=SCALE_TO_ZERO_AFTER_S + 90,
    )
    numbers.to_zero_s = zero - load_stopped
    # The last tick that saw a request in flight precedes the last response by up to one tick (1 s plus the tick's
    # own scrapes and writes, several seconds on a loaded machine); without the idle period the replica would go at
    # the next stabilization step, ~7 s after the load.
    if numbers.to_zero_s < SCALE_TO_ZERO_AFTER_S - 8:
        raise AssertionError(f"scaled to zero {numbers.to_zero_s:.1f} s after the load: before the idle period")
    step(f"zero replicas {numbers.to_zero_s:.1f} s after the load stopped")
    wait_gone(cluster, namespace, gateway_url)

    step("a request at zero again")
    numbers.second_from_zero_s = held_request_answered(cluster, namespace, gateway_url, timeline)
    statuses[200] += 1
    step(f"held request answered after {numbers.second_from_zero_s:.1f} s")
    numbers.statuses = statuses
    return numbers, timeline


def wait_gone(cluster: LocalCluster, namespace: str, gateway_url: str, timeout_s: float = 90) -> None:
    """Until no pod of the model exists (terminating ones included) and the gateway routes to none."""
    deadline = time.monotonic() + timeout_s
    while pods(cluster, namespace) or gateway_gauge(gateway_url, "dialogue_gateway_endpoints", namespace, MODEL) > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"pods left at zero replicas: {pods(cluster, namespace)}")
        time.sleep(0.5)

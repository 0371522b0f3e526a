"""Autoscaling end to end on the local cluster: sim engines on the process-backed node, the real operator (chart
ServiceAccount) and the real gateway (chart RBAC). Load through the gateway rises -> replicas grow; load stops ->
replicas shrink to one, then to zero after the idle period; a request at zero is held and answered once a replica
is Ready. Every request's HTTP status is recorded: none may fail.

The operator runs with a 1 s autoscaler tick and short policy windows (DIALOGUE_OPERATOR_AUTOSCALE_POLICY), and
each sim replica serves two sequences at 20 tok/s (40 tok/s in all), so six conversations saturate it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from e2e.cluster.harness import LocalCluster
from tests.integration.autoscale.autoscale_support import (
    Load,
    Timeline,
    gateway_gauge,
    gateway_knows,
    get_json,
    model_events,
    one_request,
    start_gateway,
    step,
)
from tests.integration.gateway.conftest import Procs
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    chart_release,
    start_operator,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(420)]

MODEL = "chat"
MAX_REPLICAS = 3
TARGET_IN_FLIGHT = 2
CLIENTS = 6  # in flight at all times: ceil(6 / 2) = 3 replicas wanted
SCALE_TO_ZERO_AFTER_S = 30
MAX_TOKENS = 16  # ~0.8 s per request at 20 tok/s when the replica is not saturated
# Windows shortened from the defaults (60 s stable, 600 s scale-down stabilization) so the test fits in minutes.
POLICY = "stable_window_s=6,panic_window_s=3,scale_down_stabilization_s=6"
ANNOTATION = "dialogue.dev/scale-from-zero-requested-at"


def dialogue_model() -> dict[str, object]:
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


def held_request_answered(
    cluster: LocalCluster, namespace: str, gateway_url: str, timeline: Timeline, gateway_held: Callable[[], float]
) -> float:
    """Send one request at zero; check it is held (gateway gauge, annotation) until a replica is Ready and answers.
    Returns the seconds the client waited."""
    request = one_request(gateway_url, MODEL, MAX_TOKENS, timeout_s=200)
    deadline = time.monotonic() + 20
    while gateway_held() < 1 and not request.done():
        assert time.monotonic() < deadline, "the gateway never counted the request at zero as held"
        time.sleep(0.2)
    assert not request.done(), "a request at zero was answered without a replica"
    timeline.wait("a replica scaled from zero", lambda spec, ready, desired, reason: spec >= 1, timeout_s=60)
    outcomes = request.stop(timeout_s=200)
    assert [o.status for o in outcomes] == [200], f"the held request failed: {outcomes}"
    annotations = get_json(cluster, "dialoguemodel", MODEL, "-n", namespace)["metadata"].get("annotations") or {}
    assert ANNOTATION in annotations, "the gateway did not annotate the DialogueModel while holding"
    return outcomes[0].seconds


def test_load_scales_up_idle_scales_to_zero_and_a_held_request_scales_from_zero(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    procs = Procs(tmp_path)
    all_statuses: Counter[int] = Counter()
    try:
        step("applying the DialogueModel (sim engine, autoscaling 0..3) and starting the gateway")
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dialogue_model()))
        gateway = start_gateway(cluster, namespace, procs, hold_timeout_s=180)
        deadline = time.monotonic() + 60
        while not gateway_knows(gateway, MODEL):
            assert time.monotonic() < deadline, f"the gateway never discovered {MODEL}:\n{gateway.tail()}"
            time.sleep(0.3)

        def held() -> float:
            return gateway_gauge(gateway, "dialogue_gateway_held_requests", namespace, MODEL)

        def endpoints() -> float:
            return gateway_gauge(gateway, "dialogue_gateway_endpoints", namespace, MODEL)

        monkeypatch.setenv("DIALOGUE_OPERATOR_AUTOSCALE_POLICY", POLICY)
        monkeypatch.setenv("DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS", gateway.url + "/metrics")
        step("starting the operator (chart ServiceAccount, 1 s autoscaler tick)")
        start_operator([namespace])
        timeline = Timeline(cluster, namespace, MODEL)
        timeline.wait(
            "the autoscaler's first decision: zero replicas (minReplicas 0, no load)",
            lambda spec, ready, desired, reason: spec == 0 and desired == 0,
            timeout_s=90,
        )

        step("first request at zero: held until a replica is Ready")
        first_wait_s = held_request_answered(cluster, namespace, gateway.url, timeline, held)
        all_statuses[200] += 1
        step(f"held request answered after {first_wait_s:.1f} s")

        step(f"load: {CLIENTS} conversations in a closed loop")
        load = Load(gateway.url, MODEL, CLIENTS, MAX_TOKENS, deadline_s=150)
        load_started = time.monotonic()
        grown = timeline.wait(
            f"{MAX_REPLICAS} Ready replicas under load",
            lambda spec, ready, desired, reason: spec == MAX_REPLICAS and ready == MAX_REPLICAS,
            timeout_s=120,
        )
        time.sleep(3)  # the new replicas serve part of the load
        outcomes = load.stop()
        load_stopped = time.monotonic()
        all_statuses.update(o.status for o in outcomes)
        failed = [o for o in outcomes if o.status != 200]
        assert not failed, f"{len(failed)} of {len(outcomes)} requests under load failed: {failed[:5]}"
        assert len(outcomes) >= 3 * CLIENTS, f"only {len(outcomes)} requests were served under load"
        step(f"{len(outcomes)} requests under load, all 200; 1 -> {MAX_REPLICAS} in {grown - load_started:.1f} s")

        one = timeline.wait(
            "the replicas to shrink to one after the load stopped",
            lambda spec, ready, desired, reason: spec == 1 and desired == 1,
            timeout_s=90,
        )
        step(f"shrunk to one replica {one - load_stopped:.1f} s after the load stopped")
        zero = timeline.wait(
            "scale to zero after the idle period",
            lambda spec, ready, desired, reason: spec == 0 and desired == 0 and reason == "ScaleToZero",
            timeout_s=SCALE_TO_ZERO_AFTER_S + 90,
        )
        # The last tick that saw a request in flight precedes the last response by up to one tick (1 s plus the
        # tick's own scrapes and writes, several seconds on a loaded machine); without the idle period the
        # replica would go at the next stabilization step, ~7 s after the load.
        assert zero - load_stopped >= SCALE_TO_ZERO_AFTER_S - 8, "scaled to zero before the idle period ran out"
        step(f"zero replicas {zero - load_stopped:.1f} s after the load stopped")
        deadline = time.monotonic() + 90
        while pods(cluster, namespace) or endpoints() > 0:
            assert time.monotonic() < deadline, f"pods left at zero replicas: {pods(cluster, namespace)}"
            time.sleep(0.5)

        step("a request at zero again")
        second_wait_s = held_request_answered(cluster, namespace, gateway.url, timeline, held)
        all_statuses[200] += 1
        step(f"held request answered after {second_wait_s:.1f} s")

        # The replica counts went 0 -> 1 -> 3 -> ... -> 1 -> 0 -> 1, and each change left an Event with a reason.
        counts = [spec for spec, _ in timeline.history()]
        peak = counts.index(MAX_REPLICAS)
        assert 1 in counts[peak:] and 0 in counts[counts.index(1, peak) :], f"replica counts seen: {counts}"
        reasons = [e["reason"] for e in model_events(cluster, namespace, MODEL)]
        step(f"events: {reasons}")
        assert "ScaleFromZero" in reasons, reasons
        assert {"Panic", "LoadAboveTarget", "QueuePressure"} & set(reasons), reasons
        assert "LoadBelowTarget" in reasons, reasons
        assert "ScaleToZero" in reasons, reasons
        recent = get_json(cluster, "dialoguemodel", MODEL, "-n", namespace)["status"]["autoscaling"]["recentDecisions"]
        assert [(d["from"], d["to"], d["reason"]) for d in recent][-2:] == [
            (1, 0, "ScaleToZero"),
            (0, 1, "ScaleFromZero"),
        ]
        assert set(all_statuses) == {200}, f"HTTP statuses seen: {dict(all_statuses)}"
        step(f"done in {time.monotonic() - started:.0f} s; HTTP statuses {dict(all_statuses)}")
    finally:
        procs.stop_all()

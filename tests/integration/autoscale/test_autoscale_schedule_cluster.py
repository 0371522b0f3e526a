"""Scheduled replica bounds on the local cluster: a window that is open raises an idle model from zero to its
minReplicas with no traffic at all (replicas warm before a known peak), says so in status and Events, and when the
window is removed the model goes back to zero after its idle period. The real operator (chart ServiceAccount)
with sim engines on the process-backed node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from dialogue_operator.autoscale.policy import Reason

from e2e.autoscale_e2e import MODEL, POLICY, get_json, model_events, step
from e2e.autoscale_e2e import dialogue_model as scenario_model
from e2e.cluster.harness import LocalCluster
from tests.integration.autoscale.test_autoscale_scale_down import ready_pods, wait_for_ready_pods
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    chart_release,
    start_operator,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

# Opens every minute and never closes (there is no 31 February): open from the first minute on.
ALWAYS = {
    "name": "launch-day",
    "start": "* * * * *",
    "end": "0 0 31 2 *",
    "timeZone": "Europe/Berlin",
    "minReplicas": 2,
}


def autoscaling(model: dict[str, Any], cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = get_json(cluster, "dm", model, "-n", namespace).get("status", {}).get("autoscaling", {})
    return found


def test_an_open_window_warms_replicas_without_traffic_and_its_removal_lets_the_model_idle_to_zero(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body: dict[str, Any] = scenario_model()  # sim engine, minReplicas 0, scale to zero after 30 s idle
    body["spec"]["autoscaling"]["schedules"] = [ALWAYS]
    step("applying the DialogueModel (minReplicas 0, a schedule open now with minReplicas 2); starting the operator")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body))
    monkeypatch.setenv("DIALOGUE_OPERATOR_AUTOSCALE_POLICY", POLICY)
    start_operator([namespace])

    pods = wait_for_ready_pods(cluster, namespace, 2, " from the open window")
    status = autoscaling(MODEL, cluster, namespace)
    step(f"warm without traffic: {sorted(pods)}; status: {status.get('reason')}: {status.get('message')}")
    assert status["desiredReplicas"] == 2
    assert status["schedules"] == [{"name": "launch-day", "open": True}]  # no closesAt: it never closes
    assert any(
        e["reason"] == Reason.AT_MIN_REPLICAS and "schedule launch-day" in e["message"]
        for e in model_events(cluster, namespace, MODEL)
    ), [(e["reason"], e["message"]) for e in model_events(cluster, namespace, MODEL)]
    time.sleep(5)  # idle ticks keep the window's floor
    assert len(ready_pods(cluster, namespace)) == 2

    step("removing the schedule: the model is idle, so it goes to zero after scaleToZeroAfterSeconds")
    patch = {"spec": {"autoscaling": {"schedules": []}}}
    cluster.kubectl("patch", "dm", MODEL, "-n", namespace, "--type", "merge", "-p", json.dumps(patch))
    deadline = time.monotonic() + 150
    while autoscaling(MODEL, cluster, namespace).get("desiredReplicas") != 0 or ready_pods(cluster, namespace):
        assert time.monotonic() < deadline, f"no scale to zero: {autoscaling(MODEL, cluster, namespace)}"
        time.sleep(1)
    reasons = [e["reason"] for e in model_events(cluster, namespace, MODEL)]
    step(f"events: {reasons}")
    assert Reason.SCALE_TO_ZERO in reasons
    assert "schedules" not in autoscaling(MODEL, cluster, namespace)

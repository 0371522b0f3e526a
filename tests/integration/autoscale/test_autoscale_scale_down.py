"""Scale-down on the local cluster picks the idlest replicas: before lowering the replica count the operator (chart
ServiceAccount) marks every Ready runtime pod with its requests in flight as
`controller.kubernetes.io/pod-deletion-cost`, so the real ReplicaSet controller removes the pods serving the fewest
streams, not the newest or a random one, and the streams on the replicas that stay run to the end.

Four sim replicas on the process-backed node serve 0, 1, 2 and 3 long streams; lowering minReplicas lets the
autoscaler (target 4 in flight per replica: 6 in flight want 2 replicas) remove two of them. Without the deletion cost
the ReplicaSet would keep the right two by chance once in six runs.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from dialogue_runtime import contract

from e2e.autoscale_e2e import MODEL, POLICY, get_json, step
from e2e.autoscale_e2e import dialogue_model as scenario_model
from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import (  # noqa: F401  (fixtures used by this module)
    OperatorProcess,
    chart_release,
    start_operator,
)

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
STREAM_TOKENS = 300  # 30 s at 10 tok/s: the streams outlast the scale-down


def dialogue_model(min_replicas: int) -> dict[str, Any]:
    """The end-to-end scenario's model with slower streams (10 tok/s, batch 8) and 4 replicas at most."""
    body: dict[str, Any] = scenario_model()
    body["spec"]["engine"]["sim"] = {"decodeTokensPerSecond": 10, "maxDecodeTokensPerSecond": 100, "maxBatch": 8}
    body["spec"]["autoscaling"] = {"minReplicas": min_replicas, "maxReplicas": 4, "targetInFlightPerReplica": 4}
    return body


def ready_pods(cluster: LocalCluster, namespace: str) -> dict[str, dict[str, Any]]:
    """The model's live (not terminating) Ready pods by name."""
    items = get_json(cluster, "pods", "-n", namespace, "-l", f"dialogue.dev/model={MODEL}").get("items", [])
    out = {}
    for pod in items:
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
        if not pod["metadata"].get("deletionTimestamp") and conditions.get("Ready") == "True":
            out[pod["metadata"]["name"]] = pod
    return out


def wait_for_ready_pods(cluster: LocalCluster, namespace: str, count: int, why: str) -> dict[str, dict[str, Any]]:
    """The model's Ready pods once there are `count` of them (within two minutes)."""
    deadline = time.monotonic() + 120
    while len(pods := ready_pods(cluster, namespace)) < count:
        assert time.monotonic() < deadline, f"{count} Ready replicas expected{why}, have {sorted(pods)}"
        time.sleep(1)
    return pods


class Stream(threading.Thread):
    """One streamed chat sent straight to a runtime pod; records its HTTP status and whether it ended with [DONE]."""

    def __init__(self, pod_ip: str) -> None:
        super().__init__(daemon=True)
        self.url = f"http://{pod_ip}:{contract.ENGINE_PORT}/v1/chat/completions"
        self.status: int | None = None
        self.done = False
        self.error = ""

    def run(self) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story."}],
                "max_tokens": STREAM_TOKENS, "ignore_eos": True, "stream": True}  # fmt: skip
        request = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                self.status = response.status
                for line in response:
                    if line.strip() == b"data: [DONE]":
                        self.done = True
        except Exception as exc:  # a stream cut by its pod's deletion is recorded, not raised
            self.error = repr(exc)


def test_scale_down_removes_the_replicas_serving_the_fewest_streams(
    cluster: LocalCluster,
    namespace: str,
    start_operator: Callable[[list[str]], OperatorProcess],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    step("applying the DialogueModel (sim engine, autoscaling 4..4) and starting the operator")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(dialogue_model(min_replicas=4)))
    monkeypatch.setenv("DIALOGUE_OPERATOR_AUTOSCALE_POLICY", POLICY)
    start_operator([namespace])
    pods = wait_for_ready_pods(cluster, namespace, 4, "")
    names = sorted(pods)
    streams: dict[str, list[Stream]] = {}
    for load, name in enumerate(names):  # 0, 1, 2 and 3 streams
        streams[name] = [Stream(pods[name]["status"]["podIP"]) for _ in range(load)]
        for s in streams[name]:
            s.start()
    step(f"streams per pod: {[(n, len(s)) for n, s in streams.items()]}; lowering minReplicas to 1")
    time.sleep(3)  # a few autoscaler ticks see the streams
    patch = {"spec": {"autoscaling": {"minReplicas": 1}}}
    cluster.kubectl("patch", "dm", MODEL, "-n", namespace, "--type", "merge", "-p", json.dumps(patch))

    deadline = time.monotonic() + 60
    while len(left := ready_pods(cluster, namespace)) > 2:
        assert time.monotonic() < deadline, f"no scale-down to 2 replicas: {sorted(left)}"
        time.sleep(0.5)
    costs = {n: (p["metadata"].get("annotations") or {}).get(DELETION_COST) for n, p in left.items()}
    step(f"left: {costs} (pod: deletion cost)")
    assert sorted(left) == names[2:], f"the busiest two should stay: {names} served 0..3 streams, left {sorted(left)}"
    assert costs == {names[2]: "2", names[3]: "3"}
    recent = get_json(cluster, "dm", MODEL, "-n", namespace)["status"]["autoscaling"]["recentDecisions"]
    assert (recent[-1]["from"], recent[-1]["to"]) == (4, 2), recent

    for name in names[2:]:
        for s in streams[name]:
            s.join(timeout=90)
            assert (s.status, s.done, s.error) == (200, True, ""), f"stream on {name} did not finish cleanly"

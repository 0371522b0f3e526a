"""Counting a model's runtime pods the way the policy needs them: Ready, starting, unschedulable (pure); and which
of them a scale-down should remove first."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialogue_runtime import contract

from dialogue_operator.autoscale.observation import ReplicaMetrics

# On a scale-down the ReplicaSet controller removes, among equally ready pods, those with the lowest cost first.
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


@dataclass(frozen=True)
class ScrapeTarget:
    """A Ready runtime pod and where its engine's `/metrics` answers."""

    pod: str
    url: str


@dataclass(frozen=True)
class PodCensus:
    """Runtime pods of one model by state; terminating and finished pods are not counted."""

    ready: tuple[ScrapeTarget, ...]
    starting: int
    unschedulable: int


def _condition(pod: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in pod.get("status", {}).get("conditions") or ():
        if cond.get("type") == kind:
            return dict(cond)
    return None


def census(pods: Iterable[Mapping[str, Any]], port: int = contract.ENGINE_PORT) -> PodCensus:
    """Classify pods given as Kubernetes API JSON (camelCase keys, as kopf and raw API reads deliver them).

    Ready (condition Ready=True with a pod IP) pods become scrape targets; a pod whose PodScheduled condition
    is False with reason Unschedulable waits for a GPU; any other live pod is starting (cold start).
    """
    ready: list[ScrapeTarget] = []
    starting = unschedulable = 0
    for pod in pods:
        meta = pod.get("metadata", {})
        status = pod.get("status", {})
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        ready_cond = _condition(pod, "Ready")
        scheduled = _condition(pod, "PodScheduled")
        pod_ip = status.get("podIP")
        if ready_cond is not None and ready_cond.get("status") == "True" and pod_ip:
            host = f"[{pod_ip}]" if ":" in pod_ip else pod_ip
            ready.append(ScrapeTarget(str(meta.get("name", "")), f"http://{host}:{port}/metrics"))
        elif (
            scheduled is not None and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable"
        ):
            unschedulable += 1
        else:
            starting += 1
    ready.sort(key=lambda t: t.pod)
    return PodCensus(tuple(ready), starting, unschedulable)


def deletion_costs(pods: Iterable[Mapping[str, Any]], replicas: Iterable[ReplicaMetrics]) -> dict[str, str]:
    """The pod-deletion-cost annotations to write before a scale-down, only where they change: each scraped pod's
    requests in flight (running + waiting), so the ReplicaSet removes the idlest replicas first: the fewest streams
    are drained and the fewest live conversations lose the replica that holds their KV cache. Pods that were not
    scraped (starting, unschedulable) go first anyway, so they get none."""
    current: dict[str, str | None] = {}
    for pod in pods:
        meta = pod.get("metadata") or {}
        current[str(meta.get("name", ""))] = (meta.get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    wanted = {r.pod: str(math.ceil(r.in_flight)) for r in replicas if r.pod in current}
    return {pod: cost for pod, cost in wanted.items() if current[pod] != cost}

"""The autoscaler's shell: for one DialogueModel, list its pods, run a tick, write status.autoscaling and Events.

The reconcile applies `status.autoscaling.desiredReplicas` to the Deployments, so this shell only writes the
DialogueModel status (merge patch of the `autoscaling` key, which the reconcile never overwrites) and an Event
when the replica count changes. Before a scale-down it annotates the Ready runtime pods with a pod-deletion-cost
(their requests in flight), so the ReplicaSet removes the idlest replicas rather than the newest; without the
permission to patch pods the scale-down goes ahead with the ReplicaSet's own choice. Call
`AutoscalerShell.tick(model_body, now_s)` every ~10 s per model, e.g. from a kopf timer or the controller's loop;
keep one shell per process (it holds the TTFT windows).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dialogue_runtime import contract
from pydantic import ValidationError

from dialogue_operator.api.serving import AutoscalingSpec
from dialogue_operator.autoscale import (
    DESIRED_REPLICAS,
    Decision,
    PolicyConfig,
    ReplicaMetrics,
    scale_from_zero_requested,
)
from dialogue_operator.autoscale.collector import Fetch, TtftWindow
from dialogue_operator.autoscale.loop import autoscale_once
from dialogue_operator.autoscale.pods import DELETION_COST_ANNOTATION, deletion_costs
from dialogue_operator.autoscale.schedule import scheduled_bounds
from dialogue_operator.k8s.resources import POD, Resource

log = logging.getLogger(__name__)

STATUS_REFRESH_S = 60.0  # the window is persisted at least this often even when nothing else changes


class AutoscalerApi(Protocol):
    """What the shell needs from `KubeApi`."""

    async def list(self, resource: Resource, label_selector: str, namespace: str | None = None) -> dict[str, Any]: ...
    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    async def post_event(self, model: dict[str, Any], type_: str, reason: str, message: str) -> None: ...
    async def annotate(self, resource: Resource, namespace: str, name: str, annotations: dict[str, str]) -> None: ...


@dataclass
class AutoscalerShell:
    """Per-process autoscaler I/O: the API adapter, the metrics fetch, gateway scrape URLs, TTFT windows."""

    api: AutoscalerApi
    fetch: Fetch
    gateway_urls: Sequence[str] = ()
    timeout_s: float = 2.0
    policy_overrides: dict[str, Any] = field(default_factory=dict)
    _ttft: dict[tuple[str, str], TtftWindow] = field(default_factory=dict)
    _written_s: dict[tuple[str, str], float] = field(default_factory=dict)

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted model's in-memory windows."""
        self._ttft.pop((namespace, name), None)
        self._written_s.pop((namespace, name), None)

    async def tick(self, body: dict[str, Any], now_s: float) -> Decision | None:
        """One decision for the model in `body` (API JSON); None when autoscaling is off or its spec invalid."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        raw = (body.get("spec") or {}).get("autoscaling")
        if raw is None:
            self.forget(namespace, name)
            return None
        try:
            spec = AutoscalingSpec.model_validate(raw)
        except ValidationError as exc:
            log.warning("autoscaler: %s/%s has an invalid spec.autoscaling, skipping: %s", namespace, name, exc)
            return None
        if not spec.enabled or (body.get("spec") or {}).get("replicas") is not None:
            self.forget(namespace, name)
            return None
        previous = (body.get("status") or {}).get("autoscaling")
        selector = f"{contract.LABEL_COMPONENT}={contract.COMPONENT_RUNTIME},{contract.LABEL_MODEL}={name}"
        pods = (await self.api.list(POD, selector, namespace)).get("items") or []
        current = _current_replicas(previous, pods, spec)
        bounds = scheduled_bounds(spec.min_replicas, spec.max_replicas, spec.schedules, now_s)
        overrides: dict[str, Any] = {
            "min_replicas": bounds.min_replicas,
            "max_replicas": bounds.max_replicas,
            "bounds_from": bounds.source,
        }
        tick = await autoscale_once(
            config=PolicyConfig.from_spec(spec, **{**overrides, **self.policy_overrides}),
            previous_status=previous,
            deployment_replicas=current,
            pods=pods,
            fetch=self.fetch,
            now_s=now_s,
            namespace=namespace,
            model=name,
            gateway_urls=self.gateway_urls,
            ttft_window=self._ttft.setdefault((namespace, name), TtftWindow()),
            scale_from_zero_requested=scale_from_zero_requested(meta.get("annotations"), previous),
            timeout_s=self.timeout_s,
        )
        decision = tick.decision
        changed = decision.desired_replicas != current
        if decision.desired_replicas < current:
            await self._mark_idlest_for_deletion(namespace, pods, tick.observation.replicas)
        prev = previous or {}
        status: dict[str, Any] = dict(tick.status)
        if spec.schedules:  # each window: open or not, and when that changes
            status["schedules"] = [w.to_status() for w in bounds.windows]
        elif "schedules" in prev:
            status["schedules"] = None  # merge patch: drop the list of windows no longer in the spec
        due = now_s - self._written_s.get((namespace, name), float("-inf")) >= STATUS_REFRESH_S
        fresh = prev.get("reason") != decision.reason or prev.get("schedules") != status.get("schedules")
        if changed or due or fresh or DESIRED_REPLICAS not in prev:
            await self.api.patch_status(namespace, name, {"autoscaling": status})
            self._written_s[(namespace, name)] = now_s
        if changed:
            log.info("autoscaler: %s/%s %s: %s", namespace, name, decision.reason, decision.message)
            await self.api.post_event(body, "Normal", decision.reason, decision.message)
        return decision

    async def _mark_idlest_for_deletion(
        self, namespace: str, pods: list[dict[str, Any]], replicas: Sequence[ReplicaMetrics]
    ) -> None:
        changes = deletion_costs(pods, replicas)
        results = await asyncio.gather(
            *(self.api.annotate(POD, namespace, pod, {DELETION_COST_ANNOTATION: v}) for pod, v in changes.items()),
            return_exceptions=True,
        )
        for pod, result in zip(changes, results, strict=True):
            if isinstance(result, Exception):  # e.g. no `patch pods` permission, or the pod just went away
                log.warning("autoscaler: could not set the deletion cost of pod %s/%s: %s", namespace, pod, result)


def _current_replicas(previous: dict[str, Any] | None, pods: list[dict[str, Any]], spec: AutoscalingSpec) -> int:
    """What the Deployments are asked for: the last decision (the reconcile applies it), else the live pods."""
    desired = (previous or {}).get(DESIRED_REPLICAS)
    if isinstance(desired, int | float) and not isinstance(desired, bool):
        low, high = spec.replica_range()  # the policy applies the bounds in force now (schedules)
        return max(low, min(high, int(desired)))
    live = sum(1 for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp"))
    return live if live else spec.min_replicas

"""One autoscaler tick for one model: census, scrape, decide (async; I/O only through the injected fetch).

The operator calls `autoscale_once` on a timer per DialogueModel with autoscaling on and patches the returned
`status` into `status.autoscaling` (the reconcile applies its `desiredReplicas` to the Deployment), emitting an
Event with `decision.reason`/`decision.message` when the count changes. Nothing here talks to the API server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dialogue_operator.autoscale.collector import Fetch, TtftWindow, scrape_gateways, scrape_pod_metrics
from dialogue_operator.autoscale.config import PolicyConfig
from dialogue_operator.autoscale.observation import Observation
from dialogue_operator.autoscale.pods import census
from dialogue_operator.autoscale.policy import Decision, decide
from dialogue_operator.autoscale.status import autoscaling_status, state_from_status


@dataclass(frozen=True)
class Tick:
    """One tick's outcome: what was seen, the decision and the complete new `status.autoscaling` object."""

    observation: Observation
    decision: Decision
    status: dict[str, Any]


async def autoscale_once(
    *,
    config: PolicyConfig,
    previous_status: Mapping[str, Any] | None,
    deployment_replicas: int,
    pods: Iterable[Mapping[str, Any]],
    fetch: Fetch,
    now_s: float,
    namespace: str,
    model: str,
    served_model_name: str | None = None,
    gateway_urls: Sequence[str] = (),
    ttft_window: TtftWindow | None = None,
    scale_from_zero_requested: bool = False,
    timeout_s: float = 2.0,
) -> Tick:
    """Decide the replica count of one model now.

    `previous_status`: the model's current `status.autoscaling` (None on first use). `pods`: the model's runtime
    pods as API JSON. `now_s`: wall-clock epoch seconds (status outlives the process, so not monotonic).
    `scale_from_zero_requested`: `status.scale_from_zero_requested(metadata.annotations, status.autoscaling)`,
    i.e. the gateway annotated the model after the last scale change; it counts as one held request.
    `ttft_window`: keep one per model across ticks (in memory) to get TTFT p95 between scrapes and over a minute.
    """
    pod_census = census(pods)
    engines = await scrape_pod_metrics(pod_census.ready, fetch, timeout_s=timeout_s, model_name=served_model_name)
    gateway = (
        await scrape_gateways(gateway_urls, fetch, namespace, model, timeout_s=timeout_s) if gateway_urls else None
    )
    held = gateway.held if gateway else 0
    if scale_from_zero_requested and deployment_replicas == 0:
        held = max(held, 1)
    ttft = ttft_window.update(engines.ttft, now_s) if ttft_window is not None else None
    notes = tuple(f"{pod}: {why}" for pod, why in sorted(engines.failures.items()))
    obs = Observation(
        current_replicas=deployment_replicas,
        ready_replicas=len(pod_census.ready),
        replicas=engines.replicas,
        starting_replicas=pod_census.starting,
        unschedulable_replicas=pod_census.unschedulable,
        failed_scrapes=len(engines.failures),
        ttft_p95_s=ttft.interval_s if ttft else None,
        ttft_p95_minute_s=ttft.minute_s if ttft else None,
        gateway_in_flight=(gateway.in_flight + gateway.held) if gateway else None,
        gateway_held=held,
        notes=notes,
    )
    decision = decide(state_from_status(previous_status), obs, now_s, config)
    now_rfc3339 = dt.datetime.fromtimestamp(now_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Tick(obs, decision, autoscaling_status(decision, previous_status, deployment_replicas, now_rfc3339))

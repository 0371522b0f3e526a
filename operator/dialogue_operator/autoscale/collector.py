"""The metrics collector: scrapes engines and gateways concurrently through an injected fetch (async, no client).

The only I/O is the `fetch(url) -> text` coroutine the caller passes in (aiohttp in the operator, a fake
serving recorded `/metrics` captures in tests), so this module stays testable and imports no HTTP client.
A pod that times out, fails or answers text that is not vLLM's metrics is left out with a warning; the
policy then sees `failed_scrapes > 0` and refuses to scale down (partial data never scales to zero).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from dialogue_runtime.vllm_metrics import HistogramData, parse_engine_metrics
from prometheus_client.parser import text_string_to_metric_families

from dialogue_operator.autoscale.observation import ReplicaMetrics
from dialogue_operator.autoscale.pods import ScrapeTarget

log = logging.getLogger(__name__)

Fetch = Callable[[str], Awaitable[str]]
"""GET `url` and return the body; raise on connection errors and HTTP status >= 400."""

GATEWAY_IN_FLIGHT = "dialogue_gateway_in_flight_requests"
GATEWAY_HELD = "dialogue_gateway_held_requests"


@dataclass(frozen=True)
class EngineScrape:
    """What the Ready pods said: metrics of those that answered, why the others were left out."""

    replicas: tuple[ReplicaMetrics, ...]
    ttft: dict[str, HistogramData] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


async def _fetch_text(fetch: Fetch, url: str, timeout_s: float) -> str:
    async with asyncio.timeout(timeout_s):
        return await fetch(url)


async def _scrape_one(
    target: ScrapeTarget, fetch: Fetch, timeout_s: float, model_name: str | None
) -> tuple[ReplicaMetrics, HistogramData] | str:
    try:
        text = await _fetch_text(fetch, target.url, timeout_s)
    except TimeoutError:
        return f"no answer from {target.url} within {timeout_s:g}s"
    except Exception as exc:  # any transport failure leaves this pod out; the others still count
        return f"fetching {target.url} failed: {type(exc).__name__}: {exc}"
    try:
        m = parse_engine_metrics(text, model_name)
    except ValueError as exc:
        return f"{target.url} answered text that is not Prometheus metrics: {exc}"
    if model_name is not None and model_name not in m.model_names:
        served = ", ".join(sorted(m.model_names)) or "none"
        return f"{target.url} serves no model named {model_name!r} (serves: {served})"
    if m.num_requests_running is None or m.num_requests_waiting is None:
        return f"{target.url} exports no vllm:num_requests_running/waiting (not a vLLM engine, or wrong model_name)"
    kv = m.kv_cache_usage_ratio if m.kv_cache_usage_ratio is not None else 0.0
    return ReplicaMetrics(target.pod, m.num_requests_running, m.num_requests_waiting, kv), m.time_to_first_token_s


async def scrape_pod_metrics(
    targets: Sequence[ScrapeTarget], fetch: Fetch, *, timeout_s: float = 2.0, model_name: str | None = None
) -> EngineScrape:
    """Scrape every Ready pod's `/metrics` at once, each bounded by `timeout_s`; never raises for a bad pod."""
    results = await asyncio.gather(*(_scrape_one(t, fetch, timeout_s, model_name) for t in targets))
    replicas: list[ReplicaMetrics] = []
    ttft: dict[str, HistogramData] = {}
    failures: dict[str, str] = {}
    for target, result in zip(targets, results, strict=True):
        if isinstance(result, str):
            log.warning("autoscaler: leaving pod %s out of this decision: %s", target.pod, result)
            failures[target.pod] = result
        else:
            replicas.append(result[0])
            ttft[target.pod] = result[1]
    return EngineScrape(tuple(replicas), ttft, failures)


@dataclass(frozen=True)
class GatewayCounts:
    """Requests the gateways hold for a model (no Ready replica) and serve upstream right now."""

    in_flight: int
    held: int


def parse_gateway_counts(text: str, namespace: str, model: str) -> GatewayCounts:
    """Sum `dialogue_gateway_in_flight_requests` and `..._held_requests` for one model; ValueError on garbage."""
    in_flight = held = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("namespace") != namespace or sample.labels.get("model") != model:
                continue
            if sample.name == GATEWAY_IN_FLIGHT:
                in_flight += sample.value
            elif sample.name == GATEWAY_HELD:
                held += sample.value
    return GatewayCounts(round(in_flight), round(held))


async def scrape_gateways(
    urls: Sequence[str], fetch: Fetch, namespace: str, model: str, *, timeout_s: float = 2.0
) -> GatewayCounts | None:
    """Counts summed over all gateway replicas; None unless every gateway answered (a partial sum would lie)."""

    async def one(url: str) -> GatewayCounts | None:
        try:
            return parse_gateway_counts(await _fetch_text(fetch, url, timeout_s), namespace, model)
        except Exception as exc:  # timeouts, HTTP errors, garbage: this scrape gives no gateway view
            log.warning("autoscaler: gateway %s gave no usable counts: %s: %s", url, type(exc).__name__, exc)
            return None

    counts = await asyncio.gather(*(one(u) for u in urls))
    if not urls or any(c is None for c in counts):
        return None
    return GatewayCounts(sum(c.in_flight for c in counts if c), sum(c.held for c in counts if c))


class TtftWindow:
    """TTFT p95 over the observations made between two scrapes, summed over pods (pod restarts handled).

    Holds the previous cumulative histogram per pod in memory; after an operator restart the first scrape
    has no window and yields None (the policy then skips its TTFT guard for one tick).
    """

    def __init__(self) -> None:
        self._previous: dict[str, HistogramData] = {}

    def update(self, per_pod: dict[str, HistogramData], quantile: float = 0.95) -> float | None:
        deltas: dict[float, float] = {}
        count = 0.0
        for pod, hist in per_pod.items():
            before = self._previous.get(pod)
            delta = hist if before is None or hist.count < before.count else hist.minus(before)
            if before is None:
                continue  # first sight of this pod: its whole history is not "the last interval"
            count += delta.count
            for le, c in delta.buckets:
                deltas[le] = deltas.get(le, 0.0) + c
        self._previous = dict(per_pod)
        if count <= 0:
            return None
        return HistogramData(tuple(sorted(deltas.items())), count, 0.0).quantile(quantile)

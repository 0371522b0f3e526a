"""The metrics collector: scrapes engines and gateways concurrently through an injected fetch (async, no client).

The only I/O is the `fetch(url) -> text` coroutine the caller passes in (aiohttp in the operator, a fake
serving recorded `/metrics` captures in tests), so this module stays testable and imports no HTTP client.
A pod that times out, fails or answers text that is not vLLM's metrics is left out with a warning; the
policy then sees `failed_scrapes > 0` and refuses to scale down (partial data never scales to zero).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
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


@dataclass(frozen=True)
class TtftP95:
    """TTFT p95 over the last scrape interval and over the last minute (None where nothing was observed)."""

    interval_s: float | None
    minute_s: float | None


class TtftWindow:
    """TTFT p95 summed over pods, over the last scrape interval and over the last `span_s` (pod restarts handled).

    Holds the cumulative histograms of the scrapes of the last `span_s` in memory. The interval p95 reacts
    within one tick (bursts); the minute p95 is what a per-minute SLO judges and is far less noisy on steady
    traffic, where one long prompt can push a 10 s window's p95 over the target. A pod counts from the first
    scrape that saw it (its whole history is not "the last interval"). After an operator restart the first
    scrape has no window and yields None for both; until `span_s` of scrapes exist, the minute covers them all.
    """

    def __init__(self, span_s: float = 60.0) -> None:
        self.span_s = span_s
        self._scrapes: deque[tuple[float, dict[str, HistogramData]]] = deque()

    def update(self, per_pod: dict[str, HistogramData], now_s: float, quantile: float = 0.95) -> TtftP95:
        previous = self._scrapes[-1][1] if self._scrapes else {}
        while len(self._scrapes) > 1 and self._scrapes[1][0] <= now_s - self.span_s:
            self._scrapes.popleft()  # keep the newest scrape at least span_s old as the minute's baseline
        baselines: dict[str, HistogramData] = {}
        for _, scrape in reversed(self._scrapes):
            baselines.update(scrape)  # ends with each pod's oldest kept scrape
        self._scrapes.append((now_s, dict(per_pod)))
        return TtftP95(_since(previous, per_pod, quantile), _since(baselines, per_pod, quantile))


def _since(before: dict[str, HistogramData], now: dict[str, HistogramData], quantile: float) -> float | None:
    """The quantile of the observations made since `before`, summed over the pods `before` knows."""
    deltas: dict[float, float] = {}
    count = 0.0
    for pod, hist in now.items():
        earlier = before.get(pod)
        if earlier is None:
            continue
        delta = hist if hist.count < earlier.count else hist.minus(earlier)  # counter went down: restarted
        count += delta.count
        for le, c in delta.buckets:
            deltas[le] = deltas.get(le, 0.0) + c
    if count <= 0:
        return None
    return HistogramData(tuple(sorted(deltas.items())), count, 0.0).quantile(quantile)

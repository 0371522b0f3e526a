"""Static discovery for running outside Kubernetes and in tests: `--static-model NAME=URL[,URL...]` (I/O layer).

Each configured endpoint is probed on `GET /health` every `probe_interval_s`; only endpoints that answer 200 are
in rotation, exactly as a Pod must be Ready. So a static model whose engine is not up yet holds requests until
it is (hold at zero without a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from dialogue_runtime.gateway.auth import parse_secret_keys
from dialogue_runtime.gateway.balancer import replica_id
from dialogue_runtime.gateway.metrics import GatewayMetrics
from dialogue_runtime.gateway.registry import Registry
from dialogue_runtime.gateway.resources import Endpoint, ModelInfo, parse_static_model
from dialogue_runtime.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{flag} expects NAME=VALUE, got an item without '='")
        result[name] = value
    return result


def static_models(settings: GatewaySettings) -> list[tuple[ModelInfo, list[Endpoint]]]:
    """Models and endpoints from the command line, with their keys, weights and history budgets."""
    keys = _pairs(settings.static_api_keys, "--static-api-key")
    weights = _pairs(settings.static_weights, "--static-weights")
    budgets = _pairs(settings.static_history_budget, "--static-history-budget")
    result = []
    for spec in settings.static_models:
        model, endpoints = parse_static_model(spec)
        variant_weights: dict[str, float] = {}
        for part in filter(None, weights.get(model.name, "").split(",")):
            variant, _, weight = part.partition(":")
            variant_weights[variant] = float(weight)
        budget = budgets.get(model.name)
        model = ModelInfo(
            namespace="",
            name=model.name,
            served_name=model.served_name,
            weights=variant_weights,
            api_keys=parse_secret_keys(keys.get(model.name, "")),
            history_token_budget=int(budget) if budget else None,
            limits=settings.limits,
        )
        result.append((model, endpoints))
    return result


class StaticDiscovery:
    """Probes the static endpoints and keeps the registry's Ready set current."""

    def __init__(self, settings: GatewaySettings, registry: Registry, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.models = static_models(settings)
        self._task: asyncio.Task[None] | None = None
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        for model, _ in self.models:
            self.registry.set_model(model)
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0))
        await self.probe_once()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.close()

    async def _healthy(self, endpoint: Endpoint) -> bool:
        assert self._client is not None
        try:
            async with self._client.get(endpoint.url + "/health") as response:
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def probe_once(self) -> None:
        for model, endpoints in self.models:
            results = await asyncio.gather(*(self._healthy(e) for e in endpoints))
            ready = [e for e, ok in zip(endpoints, results, strict=True) if ok]
            before = {e.url for e in self.registry.endpoints(model.ref)}
            if before != {e.url for e in ready}:
                log.info("model %s: %d of %d endpoints ready", model.ref, len(ready), len(endpoints))
            self.registry.set_endpoints(model.ref, ready)
            counts: dict[str, int] = {}
            for endpoint in ready:
                counts[endpoint.variant] = counts.get(endpoint.variant, 0) + 1
            self.metrics.set_endpoints(model.namespace, model.name, counts, {replica_id(e.url) for e in ready})

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.probe_interval_s)
            await self.probe_once()

    async def notify_hold(self, model: ModelInfo) -> None:
        """Nothing to tell outside Kubernetes; probe at once so a just-started engine is found quickly."""
        await self.probe_once()

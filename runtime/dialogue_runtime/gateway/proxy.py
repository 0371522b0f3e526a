"""Forwards one admitted request to an upstream endpoint, holding at zero and retrying once (I/O layer).

Contract: an attempt that fails before any byte reached the client (connection refused, reset, a 5xx status, a
body that breaks off before a non-streamed answer is complete) is retried once on another endpoint; the failed
endpoint is ejected for a few seconds. Once a streamed answer has started, a failure ends the stream with an SSE
error event: the request is never silently sent twice. A model with no Ready endpoint holds the request until
one appears (bounded count and time; 503 with Retry-After otherwise) and calls `on_hold` at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from dialogue_runtime.gateway.balancer import replica_id
from dialogue_runtime.gateway.errors import Unavailable, UpstreamFailed
from dialogue_runtime.gateway.metrics import GatewayMetrics
from dialogue_runtime.gateway.registry import Registry, Route
from dialogue_runtime.gateway.resources import ModelInfo
from dialogue_runtime.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 2
HoldNotifier = Callable[[ModelInfo], Awaitable[None]]
ChunkTap = Callable[[bytes], None]


@dataclass
class Forward:
    """One admitted request: where it goes and what is sent."""

    model: ModelInfo
    adapter: str | None
    key: str | None
    path: str  # e.g. /v1/chat/completions
    body: dict[str, Any]
    started_s: float
    upstream_key: str | None = None  # the client's validated key, for engines started with --api-key

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


@dataclass
class Outcome:
    """What happened, for metrics and for callers that keep the answer (sessions)."""

    status: int
    variant: str
    body: bytes | None = None  # the full answer of a non-streamed request


class _Retryable(Exception):
    """An attempt failed before the client saw anything."""


class Proxy:
    """Holds the shared upstream client session and runs attempts."""

    def __init__(
        self,
        settings: GatewaySettings,
        registry: Registry,
        metrics: GatewayMetrics,
        on_hold: HoldNotifier,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.on_hold = on_hold
        self._held: dict[str, int] = {}
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.settings.connect_timeout_s, sock_read=self.settings.upstream_read_timeout_s
        )
        self._client = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            raise RuntimeError("Proxy.start() was not awaited before forwarding")
        return self._client

    # --- holding at zero ---------------------------------------------------------------------------

    async def _hold(self, model: ModelInfo) -> None:
        held = self._held.get(model.ref, 0)
        if held >= self.settings.max_held_per_model:
            raise Unavailable(
                f"Model {model.name!r} has no ready replica and {held} requests are already waiting.",
                code="hold_queue_full",
                retry_after_s=self.settings.retry_after_s,
            )
        self._held[model.ref] = held + 1
        gauge = self.metrics.held.labels(model.namespace, model.name)
        gauge.inc()
        try:
            notify = asyncio.ensure_future(self.on_hold(model))
            notify.add_done_callback(_log_notify_failure)
            ready = await self.registry.wait_for_endpoints(model.ref, self.settings.hold_timeout_s)
        finally:
            self._held[model.ref] -= 1
            gauge.dec()
        if not ready:
            raise Unavailable(
                f"Model {model.name!r} has no ready replica after waiting {self.settings.hold_timeout_s:.0f} s.",
                code="no_ready_replica",
                cause="hold_timeout",
                retry_after_s=self.settings.retry_after_s,
            )

    # --- forwarding --------------------------------------------------------------------------------

    async def forward(
        self, request: web.Request, fwd: Forward, tap: ChunkTap | None = None
    ) -> tuple[web.StreamResponse, Outcome]:
        """Send the request upstream and answer the client; raises GatewayError before anything was sent."""
        model = fwd.model
        tried: set[str] = set()
        last_error = "no endpoint"
        while len(tried) < MAX_ATTEMPTS:
            route = self.registry.route(model, fwd.key, fwd.adapter, frozenset(tried))
            if route is None:
                if tried:
                    break
                await self._hold(model)
                continue
            self.metrics.routing.labels(model.namespace, model.name, route.decision).inc()
            if tried:
                self.metrics.retries.labels(model.namespace, model.name).inc()
            tried.add(route.endpoint.url)
            try:
                return await self._attempt(request, fwd, route, tap)
            except _Retryable as exc:
                last_error = str(exc)
                log.warning(
                    "upstream %s for model %s failed before any byte was sent: %s", route.endpoint.url, model.ref, exc
                )
        raise UpstreamFailed(
            f"Model {model.name!r}: every tried replica failed ({last_error}).", code="upstream_unavailable"
        )

    async def _attempt(
        self, request: web.Request, fwd: Forward, route: Route, tap: ChunkTap | None
    ) -> tuple[web.StreamResponse, Outcome]:
        url = route.endpoint.url
        model = fwd.model
        in_flight = self.metrics.in_flight.labels(model.namespace, model.name, route.variant)
        per_endpoint = self.metrics.endpoint_in_flight.labels(
            model.namespace, model.name, route.variant, replica_id(url)
        )
        self.registry.acquire(url)
        in_flight.inc()
        per_endpoint.inc()
        try:
            try:
                upstream = await self.client.post(
                    url + fwd.path, json=fwd.body, headers=_upstream_headers(request, fwd.upstream_key)
                )
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.registry.eject(url)
                raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
            async with upstream:
                if upstream.status >= 500:
                    detail = (await _read_some(upstream)).decode("utf-8", "replace")[:200]
                    if upstream.status in (502, 503, 504):
                        self.registry.eject(url)
                    raise _Retryable(f"HTTP {upstream.status}: {detail}")
                if fwd.stream and upstream.status == 200:
                    return await self._relay_stream(request, fwd, route, upstream, tap)
                try:
                    payload = await upstream.read()
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    self.registry.eject(url)
                    raise _Retryable(f"answer broke off: {type(exc).__name__}") from exc
                response = web.Response(
                    status=upstream.status,
                    body=payload,
                    content_type=upstream.content_type or "application/json",
                    headers=_route_headers(route),
                )
                return response, Outcome(upstream.status, route.variant, payload)
        finally:
            self.registry.release(url)
            in_flight.dec()
            per_endpoint.dec()

    async def _relay_stream(
        self,
        request: web.Request,
        fwd: Forward,
        route: Route,
        upstream: aiohttp.ClientResponse,
        tap: ChunkTap | None,
    ) -> tuple[web.StreamResponse, Outcome]:
        model = fwd.model
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **_route_headers(route)},
        )
        first = True
        # From here on the client may have seen bytes: no retry, ever.
        await response.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                if first:
                    first = False
                    self.metrics.ttft.labels(model.namespace, model.name, route.variant).observe(
                        time.monotonic() - fwd.started_s
                    )
                if tap is not None:
                    tap(chunk)
                await response.write(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError) as exc:
            self.metrics.errors.labels(model.namespace, model.name, "upstream_midstream").inc()
            log.warning("stream from %s for model %s broke off: %s", route.endpoint.url, model.ref, type(exc).__name__)
            error = {
                "error": {
                    "message": "The model replica failed mid-stream.",
                    "type": "server_error",
                    "param": None,
                    "code": "upstream_midstream",
                }
            }
            await _write_quietly(response, f"data: {json.dumps(error)}\n\n".encode())
            return response, Outcome(599, route.variant)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            self.metrics.errors.labels(model.namespace, model.name, "client_disconnect").inc()
            return response, Outcome(499, route.variant)
        await _write_eof_quietly(response)
        return response, Outcome(200, route.variant)


async def _read_some(upstream: aiohttp.ClientResponse) -> bytes:
    try:
        return await upstream.content.read(4096)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return b""


async def _write_quietly(response: web.StreamResponse, data: bytes) -> None:
    try:
        await response.write(data)
        await response.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        return


async def _write_eof_quietly(response: web.StreamResponse) -> None:
    try:
        await response.write_eof()
    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
        return


def _route_headers(route: Route) -> dict[str, str]:
    """Which variant and (opaque) replica answered: for clients' debugging and the routing tests."""
    return {"X-Dialogue-Variant": route.variant, "X-Dialogue-Replica": replica_id(route.endpoint.url)}


def _upstream_headers(request: web.Request, upstream_key: str | None) -> dict[str, str]:
    """Headers passed on: the validated key (vLLM's --api-key guards /v1 when the operator sets it), a request id."""
    headers = {"Content-Type": "application/json"}
    if upstream_key:
        headers["Authorization"] = f"Bearer {upstream_key}"
    request_id = request.headers.get("X-Request-ID")
    if request_id:
        headers["X-Request-ID"] = request_id
    return headers


def _log_notify_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("telling the operator about a held request failed: %s", task.exception())

"""Assembles the gateway from its settings and runs it until SIGTERM (the process shell; wiring only)."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import time
from collections.abc import Awaitable
from typing import Protocol

from aiohttp import web

from dialogue_runtime.gateway.auth import RateLimiter
from dialogue_runtime.gateway.history import TokenCounter, load_tokenizer_counter
from dialogue_runtime.gateway.metrics import GatewayMetrics
from dialogue_runtime.gateway.proxy import Proxy
from dialogue_runtime.gateway.registry import Registry
from dialogue_runtime.gateway.resources import ModelInfo
from dialogue_runtime.gateway.server import Gateway, build_app
from dialogue_runtime.gateway.sessions import MemorySessionStore, RedisSessionStore, SessionStore
from dialogue_runtime.gateway.sessions_api import SessionsApi
from dialogue_runtime.gateway.settings import GatewaySettings
from dialogue_runtime.gateway.static import StaticDiscovery

log = logging.getLogger(__name__)


class Discovery(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def notify_hold(self, model: ModelInfo) -> Awaitable[None]: ...


def raise_open_file_limit() -> int:
    """Lift the soft open-files limit to the hard one: each held stream costs two sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def token_counters(settings: GatewaySettings) -> dict[str, TokenCounter]:
    counters: dict[str, TokenCounter] = {}
    for item in settings.tokenizers:
        name, _, path = item.partition("=")
        counter = load_tokenizer_counter(path)
        if counter is None:
            log.warning("tokenizer for %s at %s could not be loaded; using the estimator", name, path)
        else:
            counters[name] = counter
    return counters


def make_discovery(settings: GatewaySettings, registry: Registry, metrics: GatewayMetrics) -> Discovery:
    if settings.static_models:
        return StaticDiscovery(settings, registry, metrics)
    from dialogue_runtime.gateway.discovery import KubeDiscovery  # noqa: PLC0415 - only with a cluster

    return KubeDiscovery(settings, registry, metrics)


async def serve(settings: GatewaySettings) -> None:
    """Run until SIGTERM/SIGINT."""
    raise_open_file_limit()
    registry = Registry(epsilon=settings.epsilon, eject_s=settings.eject_s, clock=time.monotonic, mode=settings.routing)
    metrics = GatewayMetrics()
    discovery = make_discovery(settings, registry, metrics)
    proxy = Proxy(settings, registry, metrics, on_hold=discovery.notify_hold)
    limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute, clock=time.monotonic)
    gateway = Gateway(
        settings=settings,
        registry=registry,
        metrics=metrics,
        proxy=proxy,
        limiter=limiter,
        counters=token_counters(settings),
    )
    store: SessionStore
    sweeper: asyncio.Task[None] | None = None
    if settings.redis_url:
        redis_store = RedisSessionStore(settings.redis_url, settings.session_ttl_s, settings.session_lock_timeout_s)
        await redis_store.ping()
        store = redis_store
    else:
        memory_store = MemorySessionStore(settings.session_ttl_s)
        sweeper = asyncio.create_task(_sweep_forever(memory_store))
        store = memory_store
    app = build_app(gateway, SessionsApi(gateway, store).routes)
    await proxy.start()
    await discovery.start()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=4096, reuse_address=True)
    await site.start()
    gateway.ready = True
    log.info("dialogue gateway listening on http://%s:%d", settings.host, settings.port)
    print(f"dialogue gateway: listening on http://{settings.host}:{settings.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    gateway.ready = False
    await runner.cleanup()
    await discovery.stop()
    await proxy.close()
    if sweeper is not None:
        sweeper.cancel()
    await store.close()


async def _sweep_forever(store: MemorySessionStore, interval_s: float = 60.0) -> None:
    """Drop expired in-memory sessions that nobody reads again (Redis expires its own)."""
    while True:
        await asyncio.sleep(interval_s)
        store.sweep()

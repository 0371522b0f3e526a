"""vLLM's metric names (with the older/newer names they had) and a parser of its `/metrics` text (pure).

The one place that knows what vLLM calls things: the simulated engine exports these names, the operator's
autoscaler and the tests read them back through `parse_engine_metrics`. vLLM renames metrics every few
releases, so each reading lists the names to try, newest first. Imports only the standard library and
prometheus_client's text parser, so the operator can import it without pulling in the runtime.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

# ruff: noqa: S105 (metric names, not passwords)
# Sample names as vLLM 0.32 exposes them (counters carry `_total`; histograms are the family name).
NUM_REQUESTS_RUNNING: Final = "vllm:num_requests_running"
NUM_REQUESTS_WAITING: Final = "vllm:num_requests_waiting"
KV_CACHE_USAGE: Final = "vllm:kv_cache_usage_perc"
PREFIX_CACHE_QUERIES: Final = "vllm:prefix_cache_queries_total"
PREFIX_CACHE_HITS: Final = "vllm:prefix_cache_hits_total"
NUM_PREEMPTIONS: Final = "vllm:num_preemptions_total"
PROMPT_TOKENS: Final = "vllm:prompt_tokens_total"
GENERATION_TOKENS: Final = "vllm:generation_tokens_total"
REQUEST_SUCCESS: Final = "vllm:request_success_total"
REQUEST_PROMPT_TOKENS: Final = "vllm:request_prompt_tokens"
REQUEST_GENERATION_TOKENS: Final = "vllm:request_generation_tokens"
REQUEST_PARAMS_MAX_TOKENS: Final = "vllm:request_params_max_tokens"
TIME_TO_FIRST_TOKEN: Final = "vllm:time_to_first_token_seconds"
INTER_TOKEN_LATENCY: Final = "vllm:inter_token_latency_seconds"
TIME_PER_OUTPUT_TOKEN: Final = "vllm:request_time_per_output_token_seconds"
E2E_REQUEST_LATENCY: Final = "vllm:e2e_request_latency_seconds"
REQUEST_QUEUE_TIME: Final = "vllm:request_queue_time_seconds"
REQUEST_INFERENCE_TIME: Final = "vllm:request_inference_time_seconds"
REQUEST_PREFILL_TIME: Final = "vllm:request_prefill_time_seconds"
REQUEST_DECODE_TIME: Final = "vllm:request_decode_time_seconds"

LABEL_MODEL_NAME: Final = "model_name"
LABEL_ENGINE: Final = "engine"

# Each reading: names to try, newest first. The first name present in a scrape wins.
FALLBACKS: Final[Mapping[str, tuple[str, ...]]] = {
    NUM_REQUESTS_RUNNING: (NUM_REQUESTS_RUNNING,),
    NUM_REQUESTS_WAITING: (NUM_REQUESTS_WAITING,),
    # vLLM <= 0.9 (V0 engine): gpu_cache_usage_perc; removed since.
    KV_CACHE_USAGE: (KV_CACHE_USAGE, "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc"),
    # vLLM 0.8-0.10 called the prefix-cache counters gpu_prefix_cache_*.
    PREFIX_CACHE_QUERIES: (PREFIX_CACHE_QUERIES, "vllm:gpu_prefix_cache_queries_total"),
    PREFIX_CACHE_HITS: (PREFIX_CACHE_HITS, "vllm:gpu_prefix_cache_hits_total"),
    NUM_PREEMPTIONS: (NUM_PREEMPTIONS,),
    PROMPT_TOKENS: (PROMPT_TOKENS,),
    GENERATION_TOKENS: (GENERATION_TOKENS,),
    REQUEST_SUCCESS: (REQUEST_SUCCESS,),
    TIME_TO_FIRST_TOKEN: (TIME_TO_FIRST_TOKEN,),
    # Before vLLM 0.11 the per-token gap was exported as time_per_output_token_seconds.
    INTER_TOKEN_LATENCY: (INTER_TOKEN_LATENCY, "vllm:time_per_output_token_seconds"),
    TIME_PER_OUTPUT_TOKEN: (TIME_PER_OUTPUT_TOKEN, "vllm:time_per_output_token_seconds"),
    E2E_REQUEST_LATENCY: (E2E_REQUEST_LATENCY,),
    REQUEST_QUEUE_TIME: (REQUEST_QUEUE_TIME,),
}


def counter_base(sample_name: str) -> str:
    """The name to give prometheus_client's Counter so that it exposes `sample_name` (it appends `_total`)."""
    return sample_name.removesuffix("_total")


@dataclass(frozen=True)
class HistogramData:
    """One histogram summed over the selected series: cumulative bucket counts by upper bound, count, sum."""

    buckets: tuple[tuple[float, float], ...] = ()  # (le, cumulative count), ascending, ending with +Inf
    count: float = 0.0
    sum: float = 0.0

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def minus(self, earlier: HistogramData) -> HistogramData:
        """The observations made since `earlier` (a previous scrape of the same series)."""
        before = dict(earlier.buckets)
        return HistogramData(
            buckets=tuple((le, c - before.get(le, 0.0)) for le, c in self.buckets),
            count=self.count - earlier.count,
            sum=self.sum - earlier.sum,
        )

    def quantile(self, q: float) -> float | None:
        """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q*count."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower_le, lower_count = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(le):
                    return lower_le  # past the last finite bucket: its bound is the best estimate
                if cumulative == lower_count:
                    return le
                return lower_le + (le - lower_le) * (rank - lower_count) / (cumulative - lower_count)
            lower_le, lower_count = le, cumulative
        return lower_le


@dataclass(frozen=True)
class EngineMetrics:
    """The readings of one vLLM `/metrics` scrape that scaling, routing and tests use (None: not exported)."""

    model_names: frozenset[str]
    num_requests_running: float | None
    num_requests_waiting: float | None
    kv_cache_usage_ratio: float | None
    prefix_cache_queries_total: float | None
    prefix_cache_hits_total: float | None
    num_preemptions_total: float | None
    prompt_tokens_total: float | None
    generation_tokens_total: float | None
    request_success_total: float | None
    time_to_first_token_s: HistogramData = field(default_factory=HistogramData)
    inter_token_latency_s: HistogramData = field(default_factory=HistogramData)
    e2e_request_latency_s: HistogramData = field(default_factory=HistogramData)
    request_queue_time_s: HistogramData = field(default_factory=HistogramData)

    @property
    def prefix_cache_hit_ratio(self) -> float | None:
        if not self.prefix_cache_queries_total or self.prefix_cache_hits_total is None:
            return None
        return self.prefix_cache_hits_total / self.prefix_cache_queries_total


_Sample = tuple[dict[str, str], float]


def _samples_by_name(text: str) -> dict[str, list[_Sample]]:
    out: dict[str, list[_Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def _selected(samples: Iterable[_Sample], model_name: str | None) -> list[_Sample]:
    return [s for s in samples if model_name is None or s[0].get(LABEL_MODEL_NAME) == model_name]


def _sum(index: Mapping[str, list[_Sample]], reading: str, model_name: str | None) -> float | None:
    """Sum of the first name for `reading` present in the scrape (over engines, reasons...)."""
    for name in FALLBACKS.get(reading, (reading,)):
        if name in index:
            return math.fsum(v for _, v in _selected(index[name], model_name))
    return None


def _histogram(index: Mapping[str, list[_Sample]], reading: str, model_name: str | None) -> HistogramData:
    for name in FALLBACKS.get(reading, (reading,)):
        if f"{name}_count" not in index:
            continue
        by_le: dict[float, float] = {}
        for labels, value in _selected(index.get(f"{name}_bucket", []), model_name):
            le = float(labels["le"])
            by_le[le] = by_le.get(le, 0.0) + value
        return HistogramData(
            buckets=tuple(sorted(by_le.items())),
            count=math.fsum(v for _, v in _selected(index[f"{name}_count"], model_name)),
            sum=math.fsum(v for _, v in _selected(index.get(f"{name}_sum", []), model_name)),
        )
    return HistogramData()


def parse_engine_metrics(text: str, model_name: str | None = None) -> EngineMetrics:
    """Read a vLLM (or simulated engine) `/metrics` text; `model_name` keeps only that served model's series.

    Series from several engines (data-parallel ranks, label `engine`) are summed, except the KV-cache
    usage ratio, which is their mean. Raises ValueError on text that is not the Prometheus format.
    """
    index = _samples_by_name(text)
    models = frozenset(
        labels[LABEL_MODEL_NAME]
        for name, samples in index.items()
        if name.startswith("vllm:")
        for labels, _ in samples
        if LABEL_MODEL_NAME in labels
    )
    kv: float | None = None
    for name in FALLBACKS[KV_CACHE_USAGE]:
        if name in index:
            values = [v for _, v in _selected(index[name], model_name)]
            kv = math.fsum(values) / len(values) if values else None
            break
    return EngineMetrics(
        model_names=models,
        num_requests_running=_sum(index, NUM_REQUESTS_RUNNING, model_name),
        num_requests_waiting=_sum(index, NUM_REQUESTS_WAITING, model_name),
        kv_cache_usage_ratio=kv,
        prefix_cache_queries_total=_sum(index, PREFIX_CACHE_QUERIES, model_name),
        prefix_cache_hits_total=_sum(index, PREFIX_CACHE_HITS, model_name),
        num_preemptions_total=_sum(index, NUM_PREEMPTIONS, model_name),
        prompt_tokens_total=_sum(index, PROMPT_TOKENS, model_name),
        generation_tokens_total=_sum(index, GENERATION_TOKENS, model_name),
        request_success_total=_sum(index, REQUEST_SUCCESS, model_name),
        time_to_first_token_s=_histogram(index, TIME_TO_FIRST_TOKEN, model_name),
        inter_token_latency_s=_histogram(index, INTER_TOKEN_LATENCY, model_name),
        e2e_request_latency_s=_histogram(index, E2E_REQUEST_LATENCY, model_name),
        request_queue_time_s=_histogram(index, REQUEST_QUEUE_TIME, model_name),
    )

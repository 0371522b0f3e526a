"""The simulated engine's `/metrics`: vLLM's own metric names, help texts, labels and buckets, fed by model events.

Written with prometheus_client, the library vLLM itself uses, so the text matches a real vLLM 0.32 capture
line for line in shape: `model_name` and `engine="0"` labels, `_total`/`_created` suffixes, the same
histogram buckets. Only series the model can fill honestly are exported.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

import dialogue_runtime.vllm_metrics as names
from dialogue_runtime.sim.model import EngineModel, SimEvent

FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")

TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                  20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
TOKEN_LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                           10.0, 20.0, 40.0, 80.0)  # fmt: skip
REQUEST_LATENCY_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
                             120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip


def one_two_five_buckets(max_value: int) -> tuple[float, ...]:
    """vLLM's token-count buckets: 1, 2, 5, 10, 20, 50, ... up to max_model_len."""
    out: list[float] = []
    exponent = 0
    while True:
        for m in (1, 2, 5):
            value = m * 10**exponent
            if value > max_value:
                return tuple(out)
            out.append(float(value))
        exponent += 1


@dataclass
class _Track:
    prompt_tokens: int
    max_tokens: int
    finish_reason: str
    admitted_s: float | None = None
    first_token_s: float | None = None
    last_token_s: float | None = None
    cached_tokens: int = 0


class SimMetrics:
    """The vLLM metric families of one simulated engine and the per-request bookkeeping that feeds them."""

    def __init__(self, served_model_name: str, max_model_len: int) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name", "engine"]
        self._values = {"model_name": served_model_name, "engine": "0"}
        r = self.registry
        token_buckets = one_two_five_buckets(max_model_len)

        def hist(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, labels, buckets=buckets, registry=r)

        self.running = Gauge(names.NUM_REQUESTS_RUNNING, "Number of requests in model execution batches.", labels,
                             registry=r)  # fmt: skip
        self.waiting = Gauge(names.NUM_REQUESTS_WAITING, "Number of requests waiting to be processed.", labels,
                             registry=r)  # fmt: skip
        self.kv_usage = Gauge(names.KV_CACHE_USAGE, "KV-cache usage. 1 means 100 percent usage.", labels, registry=r)
        self.prefix_queries = Counter(names.counter_base(names.PREFIX_CACHE_QUERIES),
                                      "Prefix cache queries, in terms of number of queried tokens.", labels,
                                      registry=r)  # fmt: skip
        self.prefix_hits = Counter(names.counter_base(names.PREFIX_CACHE_HITS),
                                   "Prefix cache hits, in terms of number of cached tokens.", labels,
                                   registry=r)  # fmt: skip
        self.preemptions = Counter(names.counter_base(names.NUM_PREEMPTIONS),
                                   "Cumulative number of preemption from the engine.", labels, registry=r)  # fmt: skip
        self.prompt_tokens = Counter(names.counter_base(names.PROMPT_TOKENS), "Number of prefill tokens processed.",
                                     labels, registry=r)  # fmt: skip
        self.generation_tokens = Counter(names.counter_base(names.GENERATION_TOKENS),
                                         "Number of generation tokens processed.", labels, registry=r)  # fmt: skip
        self.success = Counter(names.counter_base(names.REQUEST_SUCCESS), "Count of successfully processed requests.",
                               [*labels, "finished_reason"], registry=r)  # fmt: skip
        self.req_prompt_tokens = hist(names.REQUEST_PROMPT_TOKENS, "Number of prefill tokens processed.", token_buckets)
        self.req_generation_tokens = hist(names.REQUEST_GENERATION_TOKENS, "Number of generation tokens processed.",
                                          token_buckets)  # fmt: skip
        self.req_max_tokens = hist(names.REQUEST_PARAMS_MAX_TOKENS, "Histogram of the max_tokens request parameter.",
                                   token_buckets)  # fmt: skip
        self.ttft = hist(names.TIME_TO_FIRST_TOKEN, "Histogram of time to first token in seconds.", TTFT_BUCKETS_S)
        self.itl = hist(names.INTER_TOKEN_LATENCY, "Histogram of inter-token latency in seconds.",
                        TOKEN_LATENCY_BUCKETS_S)  # fmt: skip
        self.tpot = hist(names.TIME_PER_OUTPUT_TOKEN, "Histogram of time_per_output_token_seconds per request.",
                         TOKEN_LATENCY_BUCKETS_S)  # fmt: skip
        self.e2e = hist(names.E2E_REQUEST_LATENCY, "Histogram of e2e request latency in seconds.",
                        REQUEST_LATENCY_BUCKETS_S)  # fmt: skip
        self.queue_time = hist(names.REQUEST_QUEUE_TIME, "Histogram of time spent in WAITING phase for request.",
                               REQUEST_LATENCY_BUCKETS_S)  # fmt: skip
        self.inference_time = hist(names.REQUEST_INFERENCE_TIME,
                                   "Histogram of time spent in RUNNING phase for request.",
                                   REQUEST_LATENCY_BUCKETS_S)  # fmt: skip
        self.prefill_time = hist(names.REQUEST_PREFILL_TIME, "Histogram of time spent in PREFILL phase for request.",
                                 REQUEST_LATENCY_BUCKETS_S)  # fmt: skip
        self.decode_time = hist(names.REQUEST_DECODE_TIME, "Histogram of time spent in DECODE phase for request.",
                                REQUEST_LATENCY_BUCKETS_S)  # fmt: skip
        for metric in (self.running, self.waiting, self.kv_usage, self.prefix_queries, self.prefix_hits,
                       self.preemptions, self.prompt_tokens, self.generation_tokens):  # fmt: skip
            metric.labels(**self._values)
        for reason in FINISH_REASONS:
            self.success.labels(**self._values, finished_reason=reason)
        self._tracks: dict[str, _Track] = {}

    def start(self, request_id: str, prompt_tokens: int, max_tokens: int, finish_reason: str) -> None:
        self._tracks[request_id] = _Track(prompt_tokens, max_tokens, finish_reason)

    def abort(self, request_id: str) -> None:
        if self._tracks.pop(request_id, None) is not None:
            self.success.labels(**self._values, finished_reason="abort").inc()

    def observe(self, event: SimEvent) -> None:
        track = self._tracks.get(event.request_id)
        if track is None:
            return
        v = self._values
        if event.kind == "admitted":
            track.admitted_s = event.time_s
            track.cached_tokens = event.cached_tokens
            self.queue_time.labels(**v).observe(event.queue_s or 0.0)
            self.prompt_tokens.labels(**v).inc(track.prompt_tokens)
            self.prefix_queries.labels(**v).inc(track.prompt_tokens)
            self.prefix_hits.labels(**v).inc(event.cached_tokens)
        elif event.kind == "first_token":
            track.first_token_s = track.last_token_s = event.time_s
            self.ttft.labels(**v).observe(event.ttft_s or 0.0)
            self.generation_tokens.labels(**v).inc(1)
        elif event.kind == "token" and track.last_token_s is not None and event.tokens > 0:
            gap_s = (event.time_s - track.last_token_s) / event.tokens
            for _ in range(event.tokens):
                self.itl.labels(**v).observe(gap_s)
            track.last_token_s = event.time_s
            self.generation_tokens.labels(**v).inc(event.tokens)
        elif event.kind == "finished":
            self._tracks.pop(event.request_id, None)
            self.e2e.labels(**v).observe(event.e2e_s or 0.0)
            self.success.labels(**v, finished_reason=track.finish_reason).inc()
            self.req_prompt_tokens.labels(**v).observe(track.prompt_tokens)
            self.req_generation_tokens.labels(**v).observe(event.tokens)
            self.req_max_tokens.labels(**v).observe(track.max_tokens)
            if track.admitted_s is not None and track.first_token_s is not None:
                self.inference_time.labels(**v).observe(event.time_s - track.admitted_s)
                self.prefill_time.labels(**v).observe(track.first_token_s - track.admitted_s)
                self.decode_time.labels(**v).observe(event.time_s - track.first_token_s)
                if event.tokens > 1:
                    self.tpot.labels(**v).observe((event.time_s - track.first_token_s) / (event.tokens - 1))
        elif event.kind == "rejected":
            self._tracks.pop(event.request_id, None)

    def render(self, model: EngineModel) -> bytes:
        """The Prometheus text exposition, with the gauges read from the model now."""
        v = self._values
        self.running.labels(**v).set(model.num_running)
        self.waiting.labels(**v).set(model.num_waiting)
        self.kv_usage.labels(**v).set(model.kv_cache_usage_ratio)
        return generate_latest(self.registry)

"""What the autoscaler sees at one tick: per-replica engine metrics, pod phases, gateway counts (pure data)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ReplicaMetrics:
    """One runtime pod's scraped engine gauges."""

    pod: str
    running: float
    waiting: float
    kv_cache_usage_ratio: float = 0.0

    @property
    def in_flight(self) -> float:
        return self.running + self.waiting


@dataclass(frozen=True)
class Observation:
    """Everything one policy decision reads; produced by the collector (or the trace simulator).

    `current_replicas` is what the Deployment asks for now; `ready_replicas` of them are Ready, `starting_replicas`
    are scheduled but not Ready yet (cold start), `unschedulable_replicas` are Pending because no node has a free
    GPU. `replicas` holds the Ready pods whose `/metrics` answered; `failed_scrapes` counts the Ready pods that did
    not (timeout, HTTP error, garbage) - they are left out, and the policy then refuses to scale down.
    `ttft_p95_s` is the TTFT p95 of the first tokens since the last tick, `ttft_p95_minute_s` over the last minute.
    """

    current_replicas: int
    ready_replicas: int
    replicas: tuple[ReplicaMetrics, ...] = ()
    starting_replicas: int = 0
    unschedulable_replicas: int = 0
    failed_scrapes: int = 0
    ttft_p95_s: float | None = None
    ttft_p95_minute_s: float | None = None
    gateway_in_flight: int | None = None
    gateway_held: int = 0
    notes: tuple[str, ...] = field(default=())

    @property
    def complete(self) -> bool:
        """True when every Ready pod was scraped: only then may the policy scale down."""
        return self.failed_scrapes == 0 and len(self.replicas) >= self.ready_replicas

    @property
    def engine_running(self) -> float:
        return sum(r.running for r in self.replicas)

    @property
    def engine_waiting(self) -> float:
        return sum(r.waiting for r in self.replicas)

    @property
    def load(self) -> float:
        """In-flight requests the model must serve now: engine in-flight plus held, or the gateway's count if larger."""
        engine = self.engine_running + self.engine_waiting + self.gateway_held
        if self.gateway_in_flight is not None:
            return max(engine, float(self.gateway_in_flight))
        return engine

    @property
    def kv_cache_usage_mean(self) -> float:
        if not self.replicas:
            return 0.0
        return sum(r.kv_cache_usage_ratio for r in self.replicas) / len(self.replicas)

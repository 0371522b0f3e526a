"""The gateway's Prometheus metrics (prefix `dialogue_gateway_`), in a registry of their own.

Per model series carry `namespace` and `model` (the DialogueModel name; empty namespace for static models);
`forget_model` removes every series of a deleted model so label sets stay bounded. Requests naming an unknown
model are counted under model="" (a client cannot create series at will).

What the autoscaler reads: `dialogue_gateway_in_flight_requests` and `dialogue_gateway_held_requests`.
What the rollout analysis reads: `dialogue_gateway_requests_total` by variant and code, the TTFT histogram.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics import MetricWrapperBase

PREFIX = "dialogue_gateway_"
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


class GatewayMetrics:
    """All gateway series; one instance per process (passed in, never global)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}requests",
            "Requests answered, by model, variant and HTTP status code.",
            ["namespace", "model", "variant", "code"],
            registry=r,
        )
        self.errors = Counter(
            f"{PREFIX}errors",
            "Failed requests by cause (bad_request, unauthorized, not_found, body_too_large, rate_limited, "
            "unavailable, hold_timeout, upstream, upstream_midstream, client_disconnect).",
            ["namespace", "model", "cause"],
            registry=r,
        )
        self.ttft = Histogram(
            f"{PREFIX}time_to_first_token_seconds",
            "Time from the request's arrival to the first streamed byte sent to the client.",
            ["namespace", "model", "variant"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.duration = Histogram(
            f"{PREFIX}request_duration_seconds",
            "End-to-end request latency through the gateway, holding time included.",
            ["namespace", "model", "variant"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.in_flight = Gauge(
            f"{PREFIX}in_flight_requests",
            "Requests being served by an upstream endpoint right now (this gateway replica).",
            ["namespace", "model", "variant"],
            registry=r,
        )
        self.endpoint_in_flight = Gauge(
            f"{PREFIX}endpoint_in_flight_requests",
            "Requests in flight per endpoint (replica id as in the X-Dialogue-Replica header), this gateway replica.",
            ["namespace", "model", "variant", "replica"],
            registry=r,
        )
        self.held = Gauge(
            f"{PREFIX}held_requests",
            "Requests waiting because the model has no Ready endpoint (scale from zero).",
            ["namespace", "model"],
            registry=r,
        )
        self.routing = Counter(
            f"{PREFIX}routing_decisions",
            "Endpoint choices: affinity_hit (conversation's home replica), overflow (home over the load bound), "
            "least_load (no conversation key).",
            ["namespace", "model", "decision"],
            registry=r,
        )
        self.retries = Counter(
            f"{PREFIX}retries",
            "Attempts retried on another endpoint after a failure before any byte reached the client.",
            ["namespace", "model"],
            registry=r,
        )
        self.endpoints = Gauge(
            f"{PREFIX}endpoints",
            "Ready endpoints known per model and variant.",
            ["namespace", "model", "variant"],
            registry=r,
        )
        self._per_model: list[MetricWrapperBase] = [
            self.requests,
            self.errors,
            self.ttft,
            self.duration,
            self.in_flight,
            self.endpoint_in_flight,
            self.held,
            self.routing,
            self.retries,
            self.endpoints,
        ]

    def forget_model(self, namespace: str, model: str) -> None:
        """Remove every series of one model (called when its DialogueModel is deleted)."""
        for metric in self._per_model:
            for sample_labels in _label_sets(metric):
                if sample_labels[:2] == (namespace, model):
                    metric.remove(*sample_labels)

    def set_endpoints(self, namespace: str, model: str, counts: dict[str, int], replicas: set[str]) -> None:
        """Set the Ready-endpoint gauge of one model; variants and idle replicas that vanished are removed."""
        for labels in _label_sets(self.endpoint_in_flight):
            if labels[:2] == (namespace, model) and labels[3] not in replicas:
                child = self.endpoint_in_flight.labels(*labels)
                if child._value.get() == 0:
                    self.endpoint_in_flight.remove(*labels)
        for labels in _label_sets(self.endpoints):
            if labels[:2] == (namespace, model) and labels[2] not in counts:
                self.endpoints.remove(*labels)
        for variant, count in counts.items():
            self.endpoints.labels(namespace, model, variant).set(count)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _label_sets(metric: MetricWrapperBase) -> list[tuple[str, ...]]:
    # prometheus_client keeps children in `_metrics` (no public listing API); read it under its lock.
    with metric._lock:
        return [tuple(labels) for labels in metric._metrics]

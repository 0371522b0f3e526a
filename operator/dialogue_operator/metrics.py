"""The operator's own Prometheus metrics: reconcile duration and errors, models by condition, API writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

ConditionCounts = Callable[[], Mapping[tuple[str, str, str], int]]  # (condition, status, reason) -> models
WriteCounts = Callable[[], Mapping[str, int]]  # "VERB Kind" -> requests


class _Snapshot(Collector):
    """Gauges computed at scrape time from the operator's caches, so deleted models leave no stale series."""

    def __init__(self, conditions: ConditionCounts, writes: WriteCounts) -> None:
        self._conditions = conditions
        self._writes = writes

    def collect(self) -> Iterable[Metric]:
        models = GaugeMetricFamily(
            "dialogue_operator_models",
            "DialogueModels by condition, status and reason.",
            labels=["condition", "status", "reason"],
        )
        for (condition, status, reason), count in sorted(self._conditions().items()):
            models.add_metric([condition, status, reason], count)
        yield models
        writes = GaugeMetricFamily(
            "dialogue_operator_api_mutating_requests",
            "Mutating API requests sent since start, by verb and kind.",
            labels=["verb", "kind"],
        )
        for key, count in sorted(self._writes().items()):
            verb, _, kind = key.partition(" ")
            writes.add_metric([verb, kind], count)
        yield writes


class OperatorMetrics:
    """All operator metrics in one registry (no module-level singletons)."""

    def __init__(self, conditions: ConditionCounts, writes: WriteCounts) -> None:
        self.registry = CollectorRegistry()
        self.reconcile_duration = Histogram(
            "dialogue_operator_reconcile_duration_seconds",
            "Time to reconcile one DialogueModel (planning and API writes).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "dialogue_operator_reconcile_errors_total",
            "Reconciles that failed, by error class.",
            labelnames=["error"],
            registry=self.registry,
        )
        self.registry.register(_Snapshot(conditions, writes))

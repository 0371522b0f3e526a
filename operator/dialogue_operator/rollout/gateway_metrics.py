"""Reads the gateway's `/metrics` text into per-variant rollout observations (pure: text in, data out).

Series read (from dialogue_runtime.gateway.metrics): `dialogue_gateway_requests_total{namespace, model,
variant, code}` and the histogram `dialogue_gateway_time_to_first_token_seconds{namespace, model, variant}`.
An error is a request answered with a 5xx code (the gateway or the engine failed it); 4xx are the client's.
Several gateway replicas: pass every page, their counters are summed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families

from dialogue_operator.rollout.model import VariantMetrics

REQUESTS = "dialogue_gateway_requests"
TTFT = "dialogue_gateway_time_to_first_token_seconds"


def variant_metrics(pages: Iterable[str], namespace: str, model: str) -> dict[str, VariantMetrics]:
    """Cumulative requests, 5xx errors and TTFT buckets per variant of one DialogueModel."""
    requests: dict[str, float] = {}
    errors: dict[str, float] = {}
    buckets: dict[str, dict[float, float]] = {}
    for page in pages:
        for family in text_string_to_metric_families(page):
            if family.name not in (REQUESTS, TTFT):
                continue
            for sample in family.samples:
                labels = sample.labels
                if labels.get("namespace", "") != namespace or labels.get("model") != model:
                    continue
                variant = labels.get("variant", "")
                if family.name == REQUESTS and sample.name == f"{REQUESTS}_total":
                    requests[variant] = requests.get(variant, 0.0) + sample.value
                    if labels.get("code", "").startswith("5"):
                        errors[variant] = errors.get(variant, 0.0) + sample.value
                elif family.name == TTFT and sample.name == f"{TTFT}_bucket":
                    le = float(labels["le"])
                    per_variant = buckets.setdefault(variant, {})
                    per_variant[le] = per_variant.get(le, 0.0) + sample.value
    out: dict[str, VariantMetrics] = {}
    for variant in sorted(set(requests) | set(buckets)):
        hist = buckets.get(variant, {})
        bounds = tuple(sorted(b for b in hist if math.isfinite(b)))
        counts = (*(int(hist[b]) for b in bounds), int(hist.get(math.inf, 0.0)))
        out[variant] = VariantMetrics(
            requests=int(requests.get(variant, 0.0)),
            errors=int(errors.get(variant, 0.0)),
            ttft_bucket_bounds_s=bounds,
            ttft_bucket_counts=counts,
        )
    return out

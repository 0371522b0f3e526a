"""Variant traffic split by status weights, sticky per conversation (pure).

A conversation key hashes to a point in [0, 100); variants sorted by name own consecutive ranges as wide as their
weights. The same key therefore lands on the same variant for its whole life (while weights stay put), and
every gateway replica agrees. Keyless requests use a caller-supplied point (e.g. a counter) instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from dialogue_runtime.gateway.balancer import stable_hash64


def split_point(key: str) -> float:
    """Map a key to [0, 100) independently of the ring hash (a different salt)."""
    return (stable_hash64(f"variant\x00{key}") % 1_000_000) / 10_000.0


def pick_variant(weights: Mapping[str, float], point: float) -> str | None:
    """The variant whose cumulative range (variants in name order) contains `point`, scaled to the weight sum.

    Weights need not sum to 100; variants with weight <= 0 get no traffic. Returns None when no weight is positive.
    """
    positive = sorted((name, w) for name, w in weights.items() if w > 0)
    total = sum(w for _, w in positive)
    if total <= 0:
        return None
    scaled = point / 100.0 * total
    cumulative = 0.0
    for name, weight in positive:
        cumulative += weight
        if scaled < cumulative:
            return name
    return positive[-1][0]

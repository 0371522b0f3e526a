"""Endpoint choice: consistent hashing with bounded load (CHWBL) and least-outstanding-requests (pure).

The ring places `vnodes` points per endpoint at blake2b hashes of "<endpoint>#<i>". A key hashes to a point and
walks clockwise to the first endpoint whose load after taking the request stays within
ceil((1 + epsilon) * (total_in_flight + 1) / n) — the bound of Mirrokni et al., as KubeAI uses with a load
factor of 1.25. The ring depends only on the endpoint names, so every gateway replica that sees the same
endpoints makes the same choice for a key as long as loads are within the bound, without shared state.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

Decision = Literal["affinity_hit", "overflow", "least_load"]

DEFAULT_EPSILON = 0.25
DEFAULT_VNODES = 160


def stable_hash64(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def replica_id(endpoint: str) -> str:
    """An opaque short id of an endpoint for the `X-Dialogue-Replica` response header (no address leaks)."""
    return hashlib.blake2b(endpoint.encode(), digest_size=6).hexdigest()


def load_bound(total_in_flight: int, endpoints: int, epsilon: float) -> int:
    """Largest in-flight count an endpoint may reach when it takes the next request."""
    if endpoints <= 0:
        raise ValueError("load_bound needs at least one endpoint")
    return max(1, math.ceil((1.0 + epsilon) * (total_in_flight + 1) / endpoints))


@dataclass(frozen=True)
class Choice:
    """The chosen endpoint and why."""

    endpoint: str
    decision: Decision


class HashRing:
    """A consistent-hash ring over endpoint names; rebuilt (cheaply) when the endpoint set changes."""

    def __init__(self, endpoints: Iterable[str], *, vnodes: int = DEFAULT_VNODES) -> None:
        self.endpoints: tuple[str, ...] = tuple(sorted(set(endpoints)))
        points: list[tuple[int, str]] = []
        for endpoint in self.endpoints:
            for i in range(vnodes):
                points.append((stable_hash64(f"{endpoint}#{i}"), endpoint))
        points.sort()
        self._hashes = [h for h, _ in points]
        self._owners = [e for _, e in points]

    def walk(self, key: str) -> list[str]:
        """Distinct endpoints in ring order starting at the key's point (the home endpoint first)."""
        if not self._owners:
            return []
        start = bisect.bisect_left(self._hashes, stable_hash64(key)) % len(self._owners)
        seen: dict[str, None] = {}
        for offset in range(len(self._owners)):
            owner = self._owners[(start + offset) % len(self._owners)]
            if owner not in seen:
                seen[owner] = None
                if len(seen) == len(self.endpoints):
                    break
        return list(seen)


def choose_bounded(
    ring: HashRing,
    key: str,
    load: Mapping[str, int],
    *,
    epsilon: float = DEFAULT_EPSILON,
    allowed: Callable[[str], bool] = lambda _e: True,
) -> Choice | None:
    """CHWBL: the first endpoint on the key's walk whose load stays within the bound, or None if none is allowed.

    `load` maps endpoint -> in-flight requests (missing = 0). `allowed` filters endpoints (ejected after a
    failure, already tried, lacking a LoRA adapter); the bound is computed over the allowed endpoints only.
    """
    candidates = [e for e in ring.walk(key) if allowed(e)]
    if not candidates:
        return None
    total = sum(load.get(e, 0) for e in candidates)
    bound = load_bound(total, len(candidates), epsilon)
    for index, endpoint in enumerate(candidates):
        if load.get(endpoint, 0) + 1 <= bound:
            return Choice(endpoint, "affinity_hit" if index == 0 else "overflow")
    # Unreachable in exact arithmetic (some endpoint is always at or below the mean); kept for safety.
    return Choice(min(candidates, key=lambda e: (load.get(e, 0), e)), "overflow")


def choose_least_load(endpoints: Iterable[str], load: Mapping[str, int], *, tie_break: int = 0) -> Choice | None:
    """Least-outstanding-requests for keyless traffic; ties are broken by rotating with `tie_break`."""
    ordered = sorted(endpoints)
    if not ordered:
        return None
    least = min(load.get(e, 0) for e in ordered)
    tied = [e for e in ordered if load.get(e, 0) == least]
    return Choice(tied[tie_break % len(tied)], "least_load")

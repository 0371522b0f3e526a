"""The gateway's live view of models and endpoints, its in-flight counts, and the routing decision (in-memory).

Discovery (or `--static-model`) writes models and endpoints here; request handlers ask `route()` for an
endpoint, hold on `wait_for_endpoints()` when a model has none, and bracket the upstream call with
`acquire()`/`release()` so in-flight counts feed the bounded-load rule. No I/O happens here; the clock is
injected for the passive ejection of endpoints that just failed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from dialogue_runtime import served_name
from dialogue_runtime.gateway.balancer import (
    DEFAULT_EPSILON,
    Choice,
    Decision,
    HashRing,
    choose_bounded,
    choose_least_load,
)
from dialogue_runtime.gateway.resources import Endpoint, ModelInfo
from dialogue_runtime.gateway.variants import pick_variant, split_point

RoutingMode = Literal["affinity", "least-load", "round-robin"]


@dataclass(frozen=True)
class Route:
    """Where one attempt of a request goes."""

    endpoint: Endpoint
    variant: str
    decision: Decision


def _claim_order(model: ModelInfo) -> tuple[str, tuple[bool, str, str]]:
    """Namespace, then the shared served-name rule (older first, then name)."""
    return model.namespace, served_name.precedence(served_name.Claim(model.name, model.created))


class Registry:
    """Models by reference, Ready endpoints by model, and this replica's in-flight count per endpoint."""

    def __init__(
        self,
        *,
        epsilon: float = DEFAULT_EPSILON,
        eject_s: float = 5.0,
        clock: Callable[[], float],
        mode: RoutingMode = "affinity",
    ) -> None:
        self.epsilon = epsilon
        self.mode = mode
        self.eject_s = eject_s
        self._clock = clock
        self.models: dict[str, ModelInfo] = {}
        self._endpoints: dict[str, dict[str, Endpoint]] = {}  # model ref -> url -> endpoint
        self._rings: dict[tuple[str, str], HashRing] = {}
        self.in_flight: dict[str, int] = {}
        self._ejected_until: dict[str, float] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._counter = itertools.count()

    # --- writes (discovery) -------------------------------------------------------------------------

    def set_model(self, model: ModelInfo) -> None:
        self.models[model.ref] = model

    def remove_model(self, ref: str) -> None:
        self.models.pop(ref, None)

    def set_endpoints(self, model_ref: str, endpoints: Iterable[Endpoint]) -> None:
        """Replace the Ready endpoints of one model and wake requests held for it."""
        self._endpoints[model_ref] = {e.url: e for e in endpoints}
        for key in [k for k in self._rings if k[0] == model_ref]:
            del self._rings[key]
        if self._endpoints[model_ref]:
            event = self._changed.pop(model_ref, None)
            if event is not None:
                event.set()

    def endpoints(self, model_ref: str) -> list[Endpoint]:
        return sorted(self._endpoints.get(model_ref, {}).values(), key=lambda e: e.url)

    # --- lookups -----------------------------------------------------------------------------------

    def resolve(self, requested: str) -> tuple[ModelInfo, str | None] | None:
        """The model a request's `model` field names and the LoRA adapter it asks for, or None.

        Accepted: the served name, the DialogueModel name, `namespace/name`, or an adapter name of a model.
        When names collide across namespaces the first namespace in sorted order wins; within one namespace
        the model that holds the name by `dialogue_runtime.served_name` (the older) wins, as the operator
        marks the newer `ServedNameConflict`.
        """
        for model in sorted(self.models.values(), key=_claim_order):
            if requested in (model.served_name, model.name, model.ref):
                return model, None
        for ref in sorted(self.models):
            model = self.models[ref]
            if requested in model.adapters:
                return model, requested
        return None

    def holds_served_name(self, model: ModelInfo) -> bool:
        """Whether `model` holds its served name in its namespace (no older model claims it)."""
        rivals = [
            m for m in self.models.values() if m.namespace == model.namespace and m.served_name == model.served_name
        ]
        return min([model, *rivals], key=_claim_order).ref == model.ref

    def _ring(self, model_ref: str, variant: str, urls: list[str]) -> HashRing:
        ring = self._rings.get((model_ref, variant))
        if ring is None or list(ring.endpoints) != sorted(urls):
            ring = self._rings[(model_ref, variant)] = HashRing(urls)
        return ring

    def _usable(self, endpoint: Endpoint, adapter: str | None, exclude: frozenset[str], now_s: float) -> bool:
        if endpoint.url in exclude or self._ejected_until.get(endpoint.url, 0.0) > now_s:
            return False
        return adapter is None or endpoint.adapters is None or adapter in endpoint.adapters

    def route(
        self, model: ModelInfo, key: str | None, adapter: str | None = None, exclude: frozenset[str] = frozenset()
    ) -> Route | None:
        """Pick variant then endpoint for one attempt; None when the model has no usable endpoint."""
        now_s = self._clock()
        usable = [e for e in self.endpoints(model.ref) if self._usable(e, adapter, exclude, now_s)]
        if not usable and exclude:
            return None
        if not usable:
            # Every endpoint is ejected: trying one beats holding a request for endpoints that exist.
            usable = [e for e in self.endpoints(model.ref) if self._usable(e, adapter, exclude, float("-inf"))]
        if not usable:
            return None
        by_variant: dict[str, list[Endpoint]] = {}
        for endpoint in usable:
            by_variant.setdefault(endpoint.variant, []).append(endpoint)
        weights = {v: w for v, w in model.weights.items() if v in by_variant and w > 0}
        if not weights:
            # No status weights yet, or every weighted variant is down: serve from what is up, evenly.
            weights = dict.fromkeys(by_variant, 1.0)
        point = split_point(key) if key is not None else float(next(self._counter) % 100)
        variant = pick_variant(weights, point) or sorted(by_variant)[0]
        candidates = by_variant[variant]
        urls = [e.url for e in candidates]
        choice: Choice | None
        if self.mode == "round-robin":
            # Baseline for benchmarks only: ignores both conversation and load.
            choice = Choice(sorted(urls)[next(self._counter) % len(urls)], "least_load")
        elif key is None or self.mode == "least-load":
            choice = choose_least_load(urls, self.in_flight, tie_break=next(self._counter))
        else:
            choice = choose_bounded(self._ring(model.ref, variant, urls), key, self.in_flight, epsilon=self.epsilon)
        if choice is None:
            return None
        chosen = next(e for e in candidates if e.url == choice.endpoint)
        return Route(chosen, variant, choice.decision)

    def has_endpoints(self, model_ref: str) -> bool:
        return bool(self._endpoints.get(model_ref))

    # --- request bookkeeping -----------------------------------------------------------------------

    def acquire(self, url: str) -> None:
        self.in_flight[url] = self.in_flight.get(url, 0) + 1

    def release(self, url: str) -> None:
        left = self.in_flight.get(url, 0) - 1
        if left > 0:
            self.in_flight[url] = left
        else:
            self.in_flight.pop(url, None)

    def eject(self, url: str) -> None:
        """Keep a failed endpoint out of rotation for `eject_s` (until discovery says more)."""
        self._ejected_until[url] = self._clock() + self.eject_s

    async def wait_for_endpoints(self, model_ref: str, timeout_s: float) -> bool:
        """Wait until the model has an endpoint; False on timeout."""
        if self.has_endpoints(model_ref):
            return True
        event = self._changed.setdefault(model_ref, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            return self.has_endpoints(model_ref)
        return True

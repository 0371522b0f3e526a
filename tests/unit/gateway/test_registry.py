"""The registry's routing: variants by weight, affinity, fallback, ejection, held requests."""

import asyncio
import collections

from dialogue_runtime.gateway.registry import Registry
from dialogue_runtime.gateway.resources import Endpoint, ModelInfo


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def endpoint(i: int, variant: str = "base") -> Endpoint:
    return Endpoint(url=f"http://127.0.0.{i}:8000", namespace="ns", model="m", variant=variant)


def registry_with(weights: dict[str, float], endpoints: list[Endpoint]) -> tuple[Registry, ModelInfo, FakeClock]:
    clock = FakeClock()
    registry = Registry(clock=clock)
    model = ModelInfo(namespace="ns", name="m", served_name="smol", weights=weights, adapters=frozenset({"sql"}))
    registry.set_model(model)
    registry.set_endpoints(model.ref, endpoints)
    return registry, model, clock


def test_resolve_by_served_name_name_ref_and_adapter() -> None:
    registry, model, _ = registry_with({}, [])
    assert registry.resolve("smol") == (model, None)
    assert registry.resolve("m") == (model, None)
    assert registry.resolve("ns/m") == (model, None)
    assert registry.resolve("sql") == (model, "sql")
    assert registry.resolve("nope") is None


def test_same_key_same_endpoint_and_variant_weights() -> None:
    registry, model, _ = registry_with({"base": 80, "canary": 20}, [endpoint(1), endpoint(2), endpoint(3, "canary")])
    first = registry.route(model, "conv-1")
    assert first is not None
    assert all(registry.route(model, "conv-1") == first for _ in range(5))
    variants = collections.Counter(r.variant for r in (registry.route(model, f"c{i}") for i in range(2000)) if r)
    assert 0.15 < variants["canary"] / 2000 < 0.25


def test_weighted_variant_without_endpoints_falls_back() -> None:
    registry, model, _ = registry_with({"base": 0, "canary": 100}, [endpoint(1)])
    route = registry.route(model, "conv")
    assert route is not None and route.variant == "base"


def test_keyless_requests_go_to_least_loaded() -> None:
    registry, model, _ = registry_with({}, [endpoint(1), endpoint(2)])
    registry.acquire(endpoint(1).url)
    route = registry.route(model, None)
    assert route is not None and route.endpoint == endpoint(2) and route.decision == "least_load"
    registry.release(endpoint(1).url)
    assert registry.in_flight == {}


def test_ejected_and_excluded_endpoints_are_skipped() -> None:
    registry, model, clock = registry_with({}, [endpoint(1), endpoint(2)])
    home = registry.route(model, "conv")
    assert home is not None
    registry.eject(home.endpoint.url)
    moved = registry.route(model, "conv")
    assert moved is not None and moved.endpoint != home.endpoint
    assert registry.route(model, "conv", exclude=frozenset({moved.endpoint.url})) is None
    clock.now_s += 10
    assert registry.route(model, "conv") == home


async def test_held_request_released_when_an_endpoint_appears() -> None:
    registry, model, _ = registry_with({}, [])
    assert registry.route(model, "conv") is None
    waiter = asyncio.create_task(registry.wait_for_endpoints(model.ref, timeout_s=5))
    await asyncio.sleep(0)
    registry.set_endpoints(model.ref, [endpoint(1)])
    assert await waiter is True
    assert await registry.wait_for_endpoints("ns/other", timeout_s=0.01) is False


def test_baseline_modes_ignore_the_conversation() -> None:
    clock = FakeClock()
    registry = Registry(clock=clock, mode="round-robin")
    model = ModelInfo(namespace="ns", name="m", served_name="smol")
    registry.set_model(model)
    registry.set_endpoints(model.ref, [endpoint(1), endpoint(2), endpoint(3)])
    picks = [r.endpoint.url for r in (registry.route(model, "same-conversation") for _ in range(6)) if r]
    assert len(set(picks)) == 3

"""Two DialogueModels of one namespace claiming one served name: the gateway routes it to the older only."""

from __future__ import annotations

from typing import Any

from dialogue_runtime.gateway.registry import Registry
from dialogue_runtime.gateway.resources import ModelInfo, parse_dialogue_model


def dm(name: str, created: str, namespace: str = "team-a", served: str = "chat") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"model": {"source": "hf://x/y", "servedName": served}},
    }


def registry_of(*objs: dict[str, Any]) -> Registry:
    registry = Registry(clock=lambda: 0.0)
    for obj in objs:
        registry.set_model(parse_dialogue_model(obj))
    return registry


def resolved_ref(registry: Registry, requested: str) -> str | None:
    found = registry.resolve(requested)
    return None if found is None else found[0].ref


def test_parse_reads_the_creation_timestamp() -> None:
    assert parse_dialogue_model(dm("assistant", "2026-05-01T11:00:00Z")).created == "2026-05-01T11:00:00Z"


def test_the_older_model_gets_the_name_even_when_its_name_sorts_last() -> None:
    registry = registry_of(dm("zz-assistant", "2026-05-01T11:00:00Z"), dm("aa-chat2", "2026-05-01T12:00:00Z"))
    assert resolved_ref(registry, "chat") == "team-a/zz-assistant"
    assert resolved_ref(registry, "aa-chat2") == "team-a/aa-chat2"  # the newer still answers to its own name
    assert resolved_ref(registry, "team-a/aa-chat2") == "team-a/aa-chat2"
    holds = {ref: registry.holds_served_name(m) for ref, m in registry.models.items()}
    assert holds == {"team-a/zz-assistant": True, "team-a/aa-chat2": False}


def test_same_second_ties_go_to_the_name_first_in_order_and_deletion_frees_the_name() -> None:
    twins = [dm("b", "2026-05-01T11:00:00Z"), dm("a", "2026-05-01T11:00:00Z")]
    registry = registry_of(*twins, dm("c", "2026-05-02T00:00:00Z"))
    assert resolved_ref(registry, "chat") == "team-a/a"
    registry.remove_model("team-a/a")
    assert resolved_ref(registry, "chat") == "team-a/b"
    registry.remove_model("team-a/b")
    assert resolved_ref(registry, "chat") == "team-a/c" and registry.holds_served_name(registry.models["team-a/c"])


def test_namespaces_keep_their_own_holders() -> None:
    registry = registry_of(dm("old", "2026-05-01T11:00:00Z", namespace="team-b"), dm("new", "2026-05-02T00:00:00Z"))
    assert resolved_ref(registry, "chat") == "team-a/new"  # across namespaces: the first namespace, as before
    assert all(registry.holds_served_name(m) for m in registry.models.values())


def test_static_models_without_timestamps_keep_name_order() -> None:
    registry = Registry(clock=lambda: 0.0)
    registry.set_model(ModelInfo(namespace="", name="b", served_name="chat"))
    registry.set_model(ModelInfo(namespace="", name="a", served_name="chat"))
    assert resolved_ref(registry, "chat") == "a"

"""Parsing DialogueModels, Pods and --static-model into the gateway's records."""

import pytest
from dialogue_runtime import contract
from dialogue_runtime.gateway.resources import lora_adapters, parse_dialogue_model, parse_pod, parse_static_model


def dialogue_model() -> dict[str, object]:
    return {
        "metadata": {"namespace": "chat", "name": "assistant"},
        "spec": {
            "model": {"source": "pvc://models/smol", "servedName": "smol"},
            "dialogue": {"systemPrompt": "Be kind.", "historyTokenBudget": 512},
            "security": {"apiKeySecretRef": {"name": "keys", "key": "token"}},
            "engine": {"args": ["--lora-modules", "sql=/a", "chat=/b", "--max-loras", "2"]},
        },
        "status": {"variants": [{"name": "base", "weight": 90}, {"name": "w8a8", "weight": 10}]},
    }


def pod(ready: str = "True", ip: str | None = "127.0.10.5", deleting: bool = False) -> dict[str, object]:
    metadata: dict[str, object] = {
        "namespace": "chat",
        "name": "assistant-base-abc",
        "labels": {contract.LABEL_MODEL: "assistant", contract.LABEL_VARIANT: "w8a8"},
    }
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": metadata,
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8001}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_dialogue_model_fields() -> None:
    model = parse_dialogue_model(dialogue_model(), frozenset({"k"}))
    assert model.ref == "chat/assistant" and model.served_name == "smol"
    assert model.weights == {"base": 90.0, "w8a8": 10.0}
    assert model.api_key_ref is not None and model.api_key_ref.key == "token"
    assert model.system_prompt == "Be kind." and model.history_token_budget == 512
    assert model.adapters == {"sql", "chat"} and model.api_keys == {"k"}


def test_minimal_dialogue_model_defaults() -> None:
    model = parse_dialogue_model({"metadata": {"namespace": "n", "name": "m"}, "spec": {}})
    assert model.served_name == "m" and model.weights == {} and model.api_key_ref is None


def test_ready_pod_is_an_endpoint_others_are_not() -> None:
    endpoint = parse_pod(pod())
    assert endpoint is not None
    assert (endpoint.url, endpoint.variant, endpoint.model_ref) == ("http://127.0.10.5:8001", "w8a8", "chat/assistant")
    assert parse_pod(pod(ready="False")) is None
    assert parse_pod(pod(ip=None)) is None
    assert parse_pod(pod(deleting=True)) is None


def test_static_model() -> None:
    model, endpoints = parse_static_model("smol=http://127.0.0.2:9000/,canary@http://127.0.0.3:9000")
    assert model.ref == "smol"
    assert [(e.url, e.variant) for e in endpoints] == [
        ("http://127.0.0.2:9000", "base"),
        ("http://127.0.0.3:9000", "canary"),
    ]
    with pytest.raises(ValueError, match="NAME=URL"):
        parse_static_model("smol")
    with pytest.raises(ValueError, match="http://"):
        parse_static_model("smol=127.0.0.1:9000")


def test_lora_modules_inline_form() -> None:
    assert lora_adapters(["--lora-modules=sql=/a"]) == {"sql"}
    assert lora_adapters(None) == frozenset()

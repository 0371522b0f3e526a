"""Drift comparison treats the apiserver's canonical forms as equal; settings come from the environment."""

from __future__ import annotations

from dialogue_operator.reconcile.hashing import is_subset
from dialogue_operator.settings import Settings


def test_quantities_compare_by_value() -> None:
    assert is_subset({"cpu": "1000m", "memory": "16384Mi"}, {"cpu": "1", "memory": "16Gi"})
    assert is_subset({"cpu": 2}, {"cpu": "2"})
    assert not is_subset({"cpu": "1500m"}, {"cpu": "1"})
    assert not is_subset({"image": "a:1"}, {"image": "a:2"})


def test_defaulted_and_omitted_fields() -> None:
    assert is_subset({"a": {"b": 1}}, {"a": {"b": 1, "defaulted": True}, "status": {}})
    assert is_subset({"readOnly": False}, {})  # omitempty
    assert not is_subset({"readOnly": True}, {})
    assert not is_subset({"replicas": 0}, {})  # a desired 0 is never "omitted"
    assert not is_subset({"args": ["a", "b"]}, {"args": ["a"]})


def test_settings_from_env() -> None:
    env = {
        "DIALOGUE_OPERATOR_NAMESPACES": "a, b,",
        "DIALOGUE_OPERATOR_WORKERS": "8",
        "DIALOGUE_OPERATOR_RESYNC_INTERVAL_S": "2.5",
        "DIALOGUE_OPERATOR_RUNTIME_IMAGE": "registry.local/runtime:dev",
        "DIALOGUE_OPERATOR_GATEWAY_METRICS_URLS": "http://gw:8080/metrics",
    }
    settings = Settings.from_env(env)
    assert settings.namespaces == ("a", "b") and settings.workers == 8 and settings.resync_interval_s == 2.5
    assert settings.runtime_image == "registry.local/runtime:dev"
    assert settings.gateway_metrics_urls == ("http://gw:8080/metrics",)
    assert Settings.from_env({}) == Settings()

"""Builds the Service, engine ConfigMap, PodDisruptionBudget and NetworkPolicy of a DialogueModel (pure)."""

from __future__ import annotations

from typing import Any

from dialogue_runtime import contract

from dialogue_operator.reconcile.engine_config import build_engine_config
from dialogue_operator.reconcile.hashing import with_spec_hash
from dialogue_operator.reconcile.labels import (
    child_name,
    common_labels,
    metadata,
    model_selector,
    runtime_labels,
    service_name,
)
from dialogue_operator.reconcile.model import ModelObject
from dialogue_operator.settings import Settings


def build_config_map(model: ModelObject, variant: str, settings: Settings) -> dict[str, Any]:
    """The ConfigMap holding `engine.json` (the runtime's EngineConfig) for one variant."""
    config = build_engine_config(model, variant, settings)
    return with_spec_hash(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(model, child_name(model, variant), runtime_labels(model, variant)),
            "data": {contract.ENGINE_CONFIG_FILE: config.model_dump_json()},
        }
    )


def build_service(model: ModelObject) -> dict[str, Any]:
    """The ClusterIP Service over every runtime pod of the model (the gateway routes to pods directly)."""
    labels = {**common_labels(model), contract.LABEL_COMPONENT: contract.COMPONENT_RUNTIME}
    return with_spec_hash(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(model, service_name(model), labels),
            "spec": {
                "type": "ClusterIP",
                "selector": model_selector(model),
                "ports": [
                    {
                        "name": contract.ENGINE_PORT_NAME,
                        "port": contract.ENGINE_PORT,
                        "targetPort": contract.ENGINE_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        }
    )


def endpoint(model: ModelObject, settings: Settings) -> str:
    """In-cluster base URL of the model's OpenAI-compatible API."""
    host = f"{service_name(model)}.{model.namespace}.svc.{settings.cluster_domain}"
    return f"http://{host}:{contract.ENGINE_PORT}/v1"


def build_pdb(model: ModelObject) -> dict[str, Any]:
    """Voluntary evictions (drains) take at most one runtime pod of the model at a time."""
    labels = {**common_labels(model), contract.LABEL_COMPONENT: contract.COMPONENT_RUNTIME}
    return with_spec_hash(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(model, service_name(model), labels),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": model_selector(model)}},
        }
    )


def _peer(labels: dict[str, str]) -> dict[str, Any]:
    """Pods with these labels in any namespace."""
    return {"namespaceSelector": {}, "podSelector": {"matchLabels": dict(sorted(labels.items()))}}


def build_network_policy(model: ModelObject, settings: Settings) -> dict[str, Any]:
    """Runtime pods accept connections only from the gateway, the operator (autoscaler scrapes) and scrapers."""
    labels = {**common_labels(model), contract.LABEL_COMPONENT: contract.COMPONENT_RUNTIME}
    return with_spec_hash(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(model, service_name(model), labels),
            "spec": {
                "podSelector": {"matchLabels": model_selector(model)},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            _peer(dict(settings.gateway_pod_labels)),
                            _peer(dict(settings.operator_pod_labels)),
                            _peer(dict(settings.metrics_scraper_labels)),
                        ],
                        "ports": [{"port": contract.ENGINE_PORT_NAME, "protocol": "TCP"}],
                    }
                ],
            },
        }
    )

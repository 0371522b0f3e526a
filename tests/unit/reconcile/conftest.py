"""Helpers for reconcile tests: DialogueModel bodies and an apiserver-like echo of applied objects."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from dialogue_operator.reconcile import ModelObject


def model_body(spec: dict[str, Any] | None = None, *, name: str = "chat", generation: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "dialogue.dev/v1alpha1",
        "kind": "DialogueModel",
        "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1234", "generation": generation},
        "spec": spec or {"model": {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"}},
    }


def as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the apiserver returns for an applied object: defaults added, quantities canonicalised, status set."""
    stored = copy.deepcopy(obj)
    stored["metadata"]["resourceVersion"] = "42"
    stored["metadata"]["generation"] = 1
    stored["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "1"
    if obj["kind"] == "Deployment":
        spec = stored["spec"]
        spec["progressDeadlineSeconds"] = 600
        pod = spec["template"]["spec"]
        pod["dnsPolicy"] = "ClusterFirst"
        pod["restartPolicy"] = "Always"
        for volume in pod["volumes"]:
            if "configMap" in volume:
                volume["configMap"]["defaultMode"] = 420
        container = pod["containers"][0]
        container["imagePullPolicy"] = "IfNotPresent"
        limits = container.get("resources", {}).get("limits", {})
        if limits.get("memory") == "16384Mi":
            limits["memory"] = "16Gi"
        replicas = spec["replicas"]
        stored["status"] = {
            "observedGeneration": 1,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
        }
    if obj["kind"] == "Service":
        stored["spec"]["clusterIP"] = "10.0.0.7"
        stored["spec"]["sessionAffinity"] = "None"
    return stored


@pytest.fixture
def chat() -> ModelObject:
    return ModelObject.from_body(model_body())

"""Names, labels, selectors and owner references of a DialogueModel's children (pure)."""

from __future__ import annotations

from typing import Any

from dialogue_runtime import contract

from dialogue_operator.reconcile.model import ModelObject

APP_NAME = "dialogue-model"


def child_name(model: ModelObject, variant: str) -> str:
    """Deployment and ConfigMap name of one variant: <model>-<variant> (at most 63 characters by the CRD)."""
    return f"{model.name}-{variant}"


def service_name(model: ModelObject) -> str:
    """The model's Service (all variants)."""
    return model.name


def model_selector(model: ModelObject) -> dict[str, str]:
    """Selects every runtime pod of the model, across variants."""
    return {contract.LABEL_COMPONENT: contract.COMPONENT_RUNTIME, contract.LABEL_MODEL: model.name}


def variant_selector(model: ModelObject, variant: str) -> dict[str, str]:
    """Selects the runtime pods of one variant (a Deployment's immutable selector)."""
    return {**model_selector(model), contract.LABEL_VARIANT: variant}


def selector_string(labels: dict[str, str]) -> str:
    """A label selector in its string form, keys sorted (status.selector for the scale subresource)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def common_labels(model: ModelObject) -> dict[str, str]:
    """app.kubernetes.io/* labels every child carries."""
    return {
        contract.LABEL_NAME: APP_NAME,
        contract.LABEL_INSTANCE: model.name,
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
        contract.LABEL_PART_OF: contract.PART_OF,
        contract.LABEL_MODEL: model.name,
    }


def runtime_labels(model: ModelObject, variant: str) -> dict[str, str]:
    """Labels of a variant's Deployment and pods (the gateway selects pods by model and variant)."""
    return {**common_labels(model), **variant_selector(model, variant)}


def owner_reference(model: ModelObject) -> dict[str, Any]:
    """The controller ownerReference that makes the garbage collector delete children with the model."""
    return {
        "apiVersion": f"{contract.API_GROUP}/{contract.API_VERSION}",
        "kind": contract.KIND,
        "name": model.name,
        "uid": model.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(model: ModelObject, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """Metadata of a child: name, namespace, labels, the owner reference."""
    return {
        "name": name,
        "namespace": model.namespace,
        "labels": dict(sorted(labels.items())),
        "ownerReferences": [owner_reference(model)],
    }

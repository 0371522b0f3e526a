"""Shared building blocks of the DialogueModel API: the base model, quantities, free-form Kubernetes objects (pure)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

# Kubernetes resource.Quantity, as the apiserver's own OpenAPI spells it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Quantity = int | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=64)]

# Marker the CRD generator turns into `x-kubernetes-preserve-unknown-fields: true`: a Kubernetes type
# (Affinity, Toleration, ...) whose full schema the apiserver checks when the Deployment is applied.
PRESERVE_UNKNOWN: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


def kube_object(description: str) -> Any:
    """A free-form Kubernetes object field (validated downstream by the apiserver on the child)."""
    return Field(default=None, description=description, json_schema_extra=PRESERVE_UNKNOWN)


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> JsonDict:
    """One CEL `x-kubernetes-validations` entry."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


class ApiModel(BaseModel):
    """Base of every user-written object: camelCase in YAML, unknown fields refused, immutable in Python."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
    )


def quantity_str(value: Quantity | None) -> str | None:
    """Normalise an int-or-string quantity to the string form Kubernetes objects carry."""
    return None if value is None else str(value)

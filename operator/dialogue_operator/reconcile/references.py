"""The Secrets and PersistentVolumeClaims a DialogueModel names, and the condition a missing one gives (pure).

A model whose API-key Secret is missing cannot be protected (the engine and the gateway have no key to check)
and one whose claim is missing cannot start: both are `Ready=False` with a reason naming the object and the
field that names it, not `Ready=True` on a node that never runs the pod.
"""

from __future__ import annotations

from dataclasses import dataclass

from dialogue_operator.api import status as st
from dialogue_operator.reconcile.model import ModelObject


@dataclass(frozen=True)
class Reference:
    """One object the spec names: kind (Secret or PersistentVolumeClaim), name, the Secret's key, the field."""

    kind: str
    name: str
    field: str
    key: str | None = None


Missing = tuple[str, str]  # (reason: SecretNotFound | ClaimNotFound, message), as Observed.missing holds it


def _claim(uri: str | None) -> str | None:
    if uri is None or not uri.startswith("pvc://"):
        return None
    return uri.removeprefix("pvc://").split("/", 1)[0]


def references(model: ModelObject) -> list[Reference]:
    """The Secret and claims the base model needs to serve, in spec order, one entry per (kind, name, key).

    Variants' claims (sources, calibration and golden sets) are not here: a missing one stops that variant's
    rollout (its Job's CalibrationSetMissing, GoldenSetMissing, ...), not the base model that is serving.
    """
    spec = model.spec
    found: list[Reference] = []
    ref = spec.security.api_key_secret_ref
    if ref is not None:
        found.append(Reference("Secret", ref.name, "spec.security.apiKeySecretRef", key=ref.key))
    source_claim = _claim(spec.model.source)
    if source_claim is not None:
        found.append(Reference("PersistentVolumeClaim", source_claim, "spec.model.source"))
    if spec.cache.pvc_name and spec.cache.pvc_name != source_claim:
        found.append(Reference("PersistentVolumeClaim", spec.cache.pvc_name, "spec.cache.pvcName"))
    return found


def missing(model: ModelObject, ref: Reference, *, exists: bool, has_key: bool = True) -> Missing | None:
    """The condition for `ref` given what the API server said (None when it is there)."""
    where = f"in namespace {model.namespace} ({ref.field})"
    if ref.kind == "Secret":
        if not exists:
            return (
                st.REASON_SECRET_NOT_FOUND,
                f'API-key Secret "{ref.name}" not found {where}; the model accepts no request until it exists',
            )
        if not has_key:
            return (
                st.REASON_SECRET_NOT_FOUND,
                f'API-key Secret "{ref.name}" has no key "{ref.key}" {where}; the model accepts no request until it '
                "has",
            )
        return None
    if not exists:
        return (st.REASON_CLAIM_NOT_FOUND, f'PersistentVolumeClaim "{ref.name}" not found {where}')
    return None

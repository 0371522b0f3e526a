"""Reads the Secret and claims a DialogueModel names, to tell a missing one from a starting model (I/O layer)."""

from __future__ import annotations

import logging

from dialogue_operator.k8s.api import KubeApi, KubeError
from dialogue_operator.k8s.resources import PVC, SECRET
from dialogue_operator.reconcile.model import ModelObject
from dialogue_operator.reconcile.references import Missing, missing, references

logger = logging.getLogger(__name__)


async def missing_references(api: KubeApi, model: ModelObject) -> tuple[Missing, ...]:
    """What the spec names and the API server does not have.

    Only the objects the spec names are read, one GET each (the chart grants `get` on secrets and
    persistentvolumeclaims, never list or watch); of a Secret only its key names are looked at, its values are
    neither kept nor logged. A read that fails otherwise than 404 (no permission, API server busy) is no finding:
    the check is skipped rather than a model reported broken.
    """
    found: list[Missing] = []
    for ref in references(model):
        resource = SECRET if ref.kind == "Secret" else PVC
        try:
            obj = await api.get(resource, model.namespace, ref.name)
        except KubeError as exc:
            logger.warning("DialogueModel %s/%s: cannot check %s: %s", model.namespace, model.name, ref.name, exc)
            continue
        data = (obj or {}).get("data") or {}
        has_key = ref.key is None or bool(data.get(ref.key))  # an empty value holds no key either
        problem = missing(model, ref, exists=obj is not None, has_key=has_key)
        if problem is not None:
            found.append(problem)
    return tuple(found)

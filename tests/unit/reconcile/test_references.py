"""The Secret and claims a model names, and the conditions a missing one gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dialogue_operator.reconcile import ModelObject, Observed, PodSummary, reconcile
from dialogue_operator.reconcile.references import Reference, missing, references
from dialogue_operator.settings import Settings


def _model(spec: dict[str, Any]) -> ModelObject:
    body = {"metadata": {"name": "m", "namespace": "chat", "uid": "u", "generation": 1}, "spec": spec}
    return ModelObject.from_body(body)


def _body(model: ModelObject) -> dict[str, Any]:
    meta = {"name": model.name, "namespace": model.namespace, "uid": model.uid, "generation": model.generation}
    return {"metadata": meta, "spec": model.spec.model_dump(mode="json", by_alias=True, exclude_none=True)}


def test_references_name_the_secret_source_claim_and_cache_claim_once() -> None:
    model = _model(
        {
            "model": {"source": "pvc://store/smollm2"},
            "security": {"apiKeySecretRef": {"name": "keys", "key": "k"}},
            "cache": {"pvcName": "cache"},
            "variants": [{"name": "q", "source": "pvc://other/gptq"}],
        }
    )
    assert references(model) == [
        Reference("Secret", "keys", "spec.security.apiKeySecretRef", key="k"),
        Reference("PersistentVolumeClaim", "store", "spec.model.source"),
        Reference("PersistentVolumeClaim", "cache", "spec.cache.pvcName"),
    ]
    assert references(_model({"model": {"source": "hf://o/m"}})) == []


def test_missing_messages_name_object_key_and_field() -> None:
    model = _model({"model": {"source": "hf://o/m"}})
    secret = Reference("Secret", "keys", "spec.security.apiKeySecretRef", key="api-key")
    assert missing(model, secret, exists=True) is None
    reason, message = missing(model, secret, exists=False) or ("", "")
    assert reason == "SecretNotFound" and 'Secret "keys" not found in namespace chat' in message
    reason, message = missing(model, secret, exists=True, has_key=False) or ("", "")
    assert reason == "SecretNotFound" and 'has no key "api-key"' in message
    claim = Reference("PersistentVolumeClaim", "store", "spec.model.source")
    assert missing(model, claim, exists=False) == (
        "ClaimNotFound",
        'PersistentVolumeClaim "store" not found in namespace chat (spec.model.source)',
    )


def _pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {"dialogue.dev/variant": "base"}},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def test_a_missing_secret_keeps_a_model_with_ready_pods_from_ready() -> None:
    model = _model({"model": {"source": "hf://o/m"}, "security": {"apiKeySecretRef": {"name": "keys"}}})
    now = datetime(2026, 1, 1, tzinfo=UTC)
    first = reconcile(model, Observed(), Settings(), now)
    deployment = next(o for o in first.desired if o["kind"] == "Deployment")
    deployment = {**deployment, "metadata": {**deployment["metadata"], "generation": 1}}
    deployment["status"] = {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}
    children = {(o["kind"], o["metadata"]["name"]): o for o in [*first.desired[:-1], deployment]}
    pods = (PodSummary.from_pod(_pod("m-0")),)

    healthy = reconcile(model, Observed(children=children, pods=pods), Settings(), now)
    conditions = {c["type"]: c for c in healthy.status["conditions"]}
    assert conditions["Ready"]["status"] == "True"

    gone = (("SecretNotFound", 'API-key Secret "keys" not found in namespace chat'),)
    broken = reconcile(model, Observed(children=children, pods=pods, missing=gone), Settings(), now)
    conditions = {c["type"]: c for c in broken.status["conditions"]}
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "SecretNotFound"
    # Just noticed (the Secret may be applied right after the model): Progressing, not yet Degraded.
    assert conditions["Progressing"]["status"] == "True" and conditions["Progressing"]["reason"] == "SecretNotFound"
    assert conditions["Degraded"]["status"] == "False"

    seen = ModelObject.from_body({**_body(model), "status": broken.status})
    for after, degraded in ((119, "False"), (120, "True")):
        later = reconcile(
            seen, Observed(children=children, pods=pods, missing=gone), Settings(), now + timedelta(seconds=after)
        )
        conditions = {c["type"]: c for c in later.status["conditions"]}
        assert conditions["Ready"]["reason"] == "SecretNotFound" and conditions["Degraded"]["status"] == degraded
    assert conditions["Degraded"]["reason"] == "SecretNotFound" and 'Secret "keys"' in conditions["Degraded"]["message"]
    assert conditions["Progressing"]["status"] == "False"

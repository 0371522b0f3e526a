"""A model naming a Secret or claim that does not exist is not Ready, whatever its pods say (KWOK's are Ready at once,
as a pod on a real node would be if its env did not name the Secret)."""

from __future__ import annotations

from typing import Any

import pytest

from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import OperatorProcess, apply, condition, dialogue_model, get_json, wait_for

pytestmark = pytest.mark.cluster
SOURCE = {"source": "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"}


def _ready(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return condition(get_json(cluster, "dm", name, "-n", namespace))


def _wait_reason(cluster: LocalCluster, namespace: str, name: str, reason: str) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (c := _ready(cluster, namespace, name)).get("reason") == reason and c,
        timeout_s=60,
        what=f"{name}: Ready reason {reason}",
    )


def _secret(cluster: LocalCluster, namespace: str, **data: str) -> None:
    cluster.kubectl("delete", "secret", "keys", "-n", namespace, "--ignore-not-found")
    literals = [f"--from-literal={k}={v}" for k, v in data.items()]
    cluster.kubectl("create", "secret", "generic", "keys", "-n", namespace, *literals)


def test_missing_api_key_secret_and_claim_are_conditions_naming_them(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    locked = dialogue_model("locked", {"model": SOURCE, "security": {"apiKeySecretRef": {"name": "keys"}}})
    stored = dialogue_model("stored", {"model": {"source": "pvc://absent/smollm2"}})
    for manifest in (locked, stored):
        proc = apply(cluster, namespace, manifest)
        assert proc.returncode == 0, proc.stderr

    secret = _wait_reason(cluster, namespace, "locked", "SecretNotFound")
    assert secret["status"] == "False", secret
    assert 'Secret "keys" not found' in secret["message"] and "spec.security.apiKeySecretRef" in secret["message"]
    # Within the grace period after apply a missing reference is progress (the Secret may be applied next), not a
    # failure: kstatus readers (Argo CD) stay yellow, not red. The unit tests cover Degraded past it.
    dm = get_json(cluster, "dm", "locked", "-n", namespace)
    degraded, progressing = condition(dm, "Degraded"), condition(dm, "Progressing")
    assert degraded["status"] == "False", degraded
    assert progressing["status"] == "True" and progressing["reason"] == "SecretNotFound", progressing
    claim = _wait_reason(cluster, namespace, "stored", "ClaimNotFound")
    assert claim["status"] == "False" and 'PersistentVolumeClaim "absent"' in claim["message"], claim
    assert "spec.model.source" in claim["message"]

    _secret(cluster, namespace, other="k1")  # the Secret exists but not the key the model names
    missing_key = _wait_reason(cluster, namespace, "locked", "SecretNotFound")
    wait_for(
        lambda: 'has no key "api-key"' in _ready(cluster, namespace, "locked").get("message", ""),
        timeout_s=30,
        what="the message names the missing key",
    )
    assert missing_key["status"] == "False"

    _secret(cluster, namespace, **{"api-key": "k1"})  # fixed: Ready on a resync, no spec change needed
    wait_for(lambda: _ready(cluster, namespace, "locked").get("status") == "True", timeout_s=60, what="locked Ready")

    cluster.kubectl("delete", "secret", "keys", "-n", namespace)  # a later deletion is noticed
    gone = _wait_reason(cluster, namespace, "locked", "SecretNotFound")
    assert gone["status"] == "False"

"""Two DialogueModels of one namespace asking for one served name: the older keeps it, the newer waits for it."""

from __future__ import annotations

import pytest

from e2e.cluster.harness import LocalCluster
from tests.integration.operator.conftest import (
    OperatorProcess,
    apply,
    condition,
    dialogue_model,
    get_json,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.cluster
SOURCE = "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"


def test_newer_model_reports_the_conflict_until_the_holder_is_deleted(
    cluster: LocalCluster, namespace: str, operator: OperatorProcess
) -> None:
    # `chat` claims its default served name, `chat`; `chat-next`, created later, asks for it explicitly.
    assert apply(cluster, namespace, dialogue_model("chat")).returncode == 0
    wait_ready(cluster, namespace, "chat", timeout_s=120)
    newer = dialogue_model("chat-next", {"model": {"source": SOURCE, "servedName": "chat"}})
    assert apply(cluster, namespace, newer).returncode == 0

    def conflict() -> dict | None:
        ready = condition(get_json(cluster, "dm", "chat-next", "-n", namespace))
        return ready if ready.get("reason") == "ServedNameConflict" else None

    ready = wait_for(conflict, timeout_s=60, what="chat-next Ready=False ServedNameConflict")
    assert ready["status"] == "False"
    # A kwok pod is Ready within a second, so `chat-next` may share `chat`'s creation second: the name decides.
    holder = 'served name "chat" is already served by DialogueModel chat'
    assert any(
        f"{holder} ({why})" in ready["message"] for why in ("older", "created in the same second, name sorts first")
    ), ready
    assert condition(get_json(cluster, "dm", "chat", "-n", namespace))["status"] == "True"
    events = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=chat-next,type=Warning"
    ).stdout
    assert "ServedNameConflict" in events

    cluster.kubectl("delete", "dm", "chat", "-n", namespace, "--wait=true", "--timeout=60s")
    wait_ready(cluster, namespace, "chat-next", timeout_s=60)

"""Served-name conflicts in one namespace: the shared rule, the Ready condition, and the controller's triggers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

from dialogue_operator.k8s.api import KubeApi
from dialogue_operator.k8s.controller import Controller
from dialogue_operator.reconcile import ModelObject, Observed, reconcile
from dialogue_operator.reconcile.served_name import ServedNameClaim, conflict_message, served_name_holder
from dialogue_operator.settings import Settings
from dialogue_runtime import served_name

from tests.unit.reconcile.conftest import model_body

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SOURCE = "hf://HuggingFaceTB/SmolLM2-135M-Instruct@main"


def body(name: str, created: str, served: str | None = "chat") -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"source": SOURCE, **({"servedName": served} if served else {})}}
    obj = model_body(spec, name=name)
    obj["metadata"]["creationTimestamp"] = created
    return obj


def claim(name: str, created: str, served: str = "chat") -> ServedNameClaim:
    return ServedNameClaim(name=name, served_name=served, created=created)


def test_rule_older_first_then_name_and_no_timestamp_is_newest() -> None:
    older = served_name.Claim("zeta", "2026-05-01T11:00:00Z")
    newer = served_name.Claim("alpha", "2026-05-01T12:00:00Z")
    twin = served_name.Claim("beta", "2026-05-01T12:00:00Z")
    unknown = served_name.Claim("aaa", "")
    assert served_name.holder([newer, older]) == older
    assert served_name.holder([twin, newer]) == newer
    assert served_name.holder([unknown, twin]) == twin
    assert served_name.holder([]) is None


def test_the_newer_model_sees_the_holder_and_the_older_sees_none() -> None:
    assistant = claim("assistant", "2026-05-01T11:00:00Z")
    chat2 = claim("chat2", "2026-05-01T12:00:00Z")
    other = claim("aaa-other", "2026-05-01T10:00:00Z", served="llama")
    assert served_name_holder(chat2, [assistant, other, chat2]) == assistant
    assert served_name_holder(assistant, [chat2, other]) is None
    assert served_name_holder(other, [assistant, chat2]) is None
    assert conflict_message(chat2, assistant) == (
        'served name "chat" is already served by DialogueModel assistant (older); '
        "recreate this model with another spec.model.servedName"
    )


def test_default_served_name_is_the_model_name() -> None:
    named = ServedNameClaim.from_body(body("chat", "2026-05-01T11:00:00Z", served=None))
    explicit = ServedNameClaim.from_body(body("newer", "2026-05-01T12:00:00Z", served="chat"))
    assert named == claim("chat", "2026-05-01T11:00:00Z")
    assert served_name_holder(explicit, [named]) == named


def test_conflict_makes_ready_false_with_a_warning_event() -> None:
    model = ModelObject.from_body(body("chat2", "2026-05-01T12:00:00Z"))
    message = conflict_message(claim("chat2", "2026-05-01T12:00:00Z"), claim("assistant", "2026-05-01T11:00:00Z"))
    plan = reconcile(model, Observed(), Settings(), NOW, served_name_conflict=message)
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "ServedNameConflict", message)
    conds = {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}
    assert conds["Degraded"] == ("True", "ServedNameConflict")  # terminal: lasts until a name changes
    assert conds["Progressing"] == ("False", "ServedNameConflict")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "ServedNameConflict")]
    assert plan.apply  # the children are still built: the model answers to its name and namespace/name


class FakeApi:
    """Records the controller's writes; applies echo the object back."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        self.events: list[tuple[str, str, str]] = []

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        raise AssertionError("nothing to delete")

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append((name, status))

    async def post_event(self, model: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((model["metadata"]["name"], type_, reason))


def _ready(status: dict[str, Any]) -> tuple[str, str]:
    cond = next(c for c in status["conditions"] if c["type"] == "Ready")
    return cond["status"], cond["reason"]


def test_controller_marks_the_newer_and_frees_the_name_when_the_older_goes() -> None:
    async def scenario() -> None:
        api = FakeApi()
        controller = Controller(cast(KubeApi, api), Settings(), clock=lambda: NOW)
        assistant, chat2 = body("assistant", "2026-05-01T11:00:00Z"), body("chat2", "2026-05-01T12:00:00Z")
        controller.model_event("ADDED", chat2)
        controller.model_event("ADDED", assistant)
        assert len(controller.queue) == 2
        await controller.reconcile_key(("team-a", "chat2"))
        await controller.reconcile_key(("team-a", "assistant"))
        assert [(n, _ready(s)) for n, s in api.statuses] == [
            ("chat2", ("False", "ServedNameConflict")),
            ("assistant", ("False", "Pending")),
        ]
        assert ("chat2", "Warning", "ServedNameConflict") in api.events
        while len(controller.queue):
            controller.queue.done(await controller.queue.get())
        controller.model_event("DELETED", assistant)
        assert controller.queue._pending == {("team-a", "chat2")}  # the peer is queued: its name is free now
        api.statuses.clear()
        await controller.reconcile_key(("team-a", "chat2"))
        assert [(n, _ready(s)) for n, s in api.statuses] == [("chat2", ("False", "Pending"))]

    asyncio.run(scenario())

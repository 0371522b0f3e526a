"""The reconcile core's view of a DialogueModel object and its errors (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from dialogue_operator.api import DialogueModelSpec, DialogueModelStatus


class ReconcileError(Exception):
    """Base of errors raised by the reconcile core."""


class InvalidSpec(ReconcileError):
    """The spec cannot be served (permanent until the spec changes); surfaced as the InvalidSpec reason."""


@dataclass(frozen=True)
class ModelObject:
    """A DialogueModel as the core needs it: identity, generation, the parsed spec, the last written status."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: DialogueModelSpec
    status: DialogueModelStatus

    @property
    def served_name(self) -> str:
        """Name clients use in the OpenAI `model` field."""
        return self.spec.model.served_name or self.name

    @classmethod
    def identity(cls, body: dict[str, Any]) -> tuple[str, str, str, int]:
        """(name, namespace, uid, generation) of a raw object."""
        meta = body.get("metadata") or {}
        return (str(meta["name"]), str(meta["namespace"]), str(meta.get("uid", "")), int(meta.get("generation") or 0))

    @staticmethod
    def parse_status(body: dict[str, Any]) -> DialogueModelStatus:
        """The last written status; one this operator version cannot read is rebuilt, never trusted."""
        try:
            return DialogueModelStatus.model_validate(body.get("status") or {})
        except ValidationError:
            return DialogueModelStatus()

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ModelObject:
        """Parse a DialogueModel object; raise InvalidSpec naming the field when the spec is unusable."""
        name, namespace, uid, generation = cls.identity(body)
        status = cls.parse_status(body)
        try:
            spec = DialogueModelSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" if err["loc"] else err["msg"]
                for err in exc.errors()
            )
            raise InvalidSpec(f"DialogueModel {namespace}/{name}: {problems}") from exc
        return cls(name=name, namespace=namespace, uid=uid, generation=generation, spec=spec, status=status)

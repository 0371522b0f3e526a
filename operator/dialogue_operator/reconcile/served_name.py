"""Served-name conflicts within a namespace: which model a name belongs to, and what the others say (pure).

Two DialogueModels in one namespace may ask for the same served name (`spec.model.servedName`, or the model's
name when unset). The older one keeps it (`dialogue_runtime.served_name`, the rule the gateway routes by); each
newer one reports `Ready=False`, reason `ServedNameConflict`, until the holder is deleted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dialogue_runtime import served_name as rule


@dataclass(frozen=True)
class ServedNameClaim:
    """A DialogueModel's identity as far as served names go."""

    name: str
    served_name: str
    created: str = ""

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ServedNameClaim:
        """Read from a raw DialogueModel object (lenient: a peer with an invalid spec still claims its name)."""
        meta = body.get("metadata") or {}
        name = str(meta.get("name") or "")
        spec_model = (body.get("spec") or {}).get("model") or {}
        served = spec_model.get("servedName") if isinstance(spec_model, Mapping) else None
        return cls(name=name, served_name=str(served or name), created=str(meta.get("creationTimestamp") or ""))

    def rule_claim(self) -> rule.Claim:
        return rule.Claim(name=self.name, created=self.created)


def served_name_holder(claim: ServedNameClaim, peers: Iterable[ServedNameClaim]) -> ServedNameClaim | None:
    """The other model of the namespace that holds `claim`'s served name, or None when `claim` holds it.

    `peers`: the other DialogueModels of the same namespace (any served name; `claim` itself is ignored).
    """
    rivals = {p.name: p for p in peers if p.served_name == claim.served_name and p.name != claim.name}
    if not rivals:
        return None
    winner = rule.holder([claim.rule_claim(), *(p.rule_claim() for p in rivals.values())])
    return None if winner is None or winner.name == claim.name else rivals[winner.name]


def conflict_message(claim: ServedNameClaim, holder: ServedNameClaim) -> str:
    """What the newer model's Ready condition says (the field is immutable: the fix is a new model)."""
    why = "older" if holder.created != claim.created else "created in the same second, name sorts first"
    return (
        f'served name "{claim.served_name}" is already served by DialogueModel {holder.name} ({why}); '
        "recreate this model with another spec.model.servedName"
    )

"""Which DialogueModel holds a served name that several in one namespace claim (pure; shared by both sides).

The operator marks every other claimant `Ready=False` (reason `ServedNameConflict`) and the gateway routes the
name to the holder only; both import this rule (the runtime never imports the operator), so they cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """One DialogueModel's claim on a served name: its name and `metadata.creationTimestamp` (RFC 3339, UTC)."""

    name: str
    created: str = ""


def precedence(claim: Claim) -> tuple[bool, str, str]:
    """Sort key of claims on one name in one namespace: the smallest holds it.

    Older first (the API server writes creationTimestamp as `YYYY-MM-DDTHH:MM:SSZ`, which sorts as text), then
    by name for models created in the same second; a claim without a timestamp counts as the newest.
    """
    return (not claim.created, claim.created, claim.name)


def holder(claims: Iterable[Claim]) -> Claim | None:
    """The claim that holds the name (None when there is none)."""
    return min(claims, key=precedence, default=None)

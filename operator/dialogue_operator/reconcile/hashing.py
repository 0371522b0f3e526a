"""Spec hashes and the desired-versus-observed comparison that decides whether a child must be applied (pure)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from dialogue_runtime import contract

_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def spec_hash(obj: dict[str, Any]) -> str:
    """A short, stable hash of an object's content (canonical JSON, sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_spec_hash(obj: dict[str, Any], *, pod_template: bool = False) -> dict[str, Any]:
    """A copy of `obj` whose metadata carries its hash.

    With `pod_template`, the pod template carries the hash of the template alone, so pods show which spec they
    run and a change of replicas alone (kubectl scale, the autoscaler) restarts no pod.
    """
    out = copy.deepcopy(obj)
    if pod_template:
        template = out["spec"]["template"]
        template["metadata"].setdefault("annotations", {})[contract.ANNOTATION_SPEC_HASH] = spec_hash(template)
    out["metadata"].setdefault("annotations", {})[contract.ANNOTATION_SPEC_HASH] = spec_hash(out)
    return out


def _quantity(value: str) -> Decimal | None:
    match = _QUANTITY_RE.match(value)
    if not match:
        return None
    number, suffix = match.group(1), match.group(2) or ""
    try:
        if suffix[:1] in {"e", "E"}:
            return Decimal(number + suffix)
        return Decimal(number) * _SUFFIX[suffix]
    except (InvalidOperation, KeyError):
        return None


def _scalar_equal(want: Any, have: Any) -> bool:
    if want == have:
        return True
    # The apiserver canonicalises quantities ("1000m" -> "1") and int-or-string values.
    if isinstance(want, str | int) and isinstance(have, str | int) and not isinstance(want, bool):
        a, b = _quantity(str(want)), _quantity(str(have))
        return a is not None and a == b
    return False


def _omitted_when_empty(value: Any) -> bool:
    """The apiserver drops `omitempty` fields holding false, "", [] or {} (a desired 0 is kept: replicas)."""
    return value is False or value in ("", [], {})


def is_subset(want: Any, have: Any) -> bool:
    """Whether every field set in `want` has the same value in `have` (fields the apiserver defaults are ignored)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            is_subset(v, have[k]) if k in have else _omitted_when_empty(v) for k, v in want.items()
        )
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(is_subset, want, have))
    return _scalar_equal(want, have)


def needs_apply(desired: dict[str, Any], observed: dict[str, Any] | None) -> bool:
    """Whether `desired` must be applied: missing, a different spec hash, or fields edited by hand (drift)."""
    if observed is None:
        return True
    want_hash = desired["metadata"].get("annotations", {}).get(contract.ANNOTATION_SPEC_HASH)
    have_hash = (observed.get("metadata") or {}).get("annotations", {}).get(contract.ANNOTATION_SPEC_HASH)
    if want_hash != have_hash:
        return True
    return not is_subset({k: v for k, v in desired.items() if k not in {"apiVersion", "kind"}}, observed)

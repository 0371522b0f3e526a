"""Spec hashes and the desired-versus-observed comparison that decides whether a child must be applied (pure)."""

from __future__ import annotations

import copy
import hashlib
import json
from decimal import Decimal
from typing import Any

from dialogue_runtime import contract
from dialogue_runtime.quantity import parse_quantity


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
    try:
        return parse_quantity(value)
    except ValueError:
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

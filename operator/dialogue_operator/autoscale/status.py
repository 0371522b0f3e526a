"""The autoscaler's part of the DialogueModel status (`status.autoscaling`): built from a decision (pure).

The reconcile reads `desiredReplicas` from there and applies it to the Deployment, so the autoscaler never
writes a Deployment itself; `state` carries the policy's windows across operator restarts; `recentDecisions`
keeps the last scale changes with their reasons for `kubectl get -o yaml` readers.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from dialogue_operator.autoscale.policy import SIGNAL_SCALE_TO_ZERO_IN_S, Decision
from dialogue_operator.autoscale.state import PolicyState

DESIRED_REPLICAS = "desiredReplicas"
RECENT_DECISIONS_KEPT = 5
# Written by the gateway (dialogue_runtime.gateway.discovery) on the DialogueModel when it holds a request at zero.
ANNOTATION_SCALE_FROM_ZERO = "dialogue.dev/scale-from-zero-requested-at"


def _parse_rfc3339(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def scale_from_zero_requested(annotations: Mapping[str, str] | None, autoscaling: Mapping[str, Any] | None) -> bool:
    """Whether the gateway asked for a replica after the autoscaler's last scale change (a held request waits).

    Stamps have one-second resolution, so a request in the same second as the last change counts as newer.
    """
    asked = _parse_rfc3339((annotations or {}).get(ANNOTATION_SCALE_FROM_ZERO))
    if asked is None:
        return False
    last = _parse_rfc3339((autoscaling or {}).get("lastScaleTime"))
    return last is None or asked >= last


def state_from_status(autoscaling: Mapping[str, Any] | None) -> PolicyState | None:
    """The policy state stored by the last decision; None when absent or unreadable (the policy starts fresh)."""
    raw = (autoscaling or {}).get("state")
    if not isinstance(raw, Mapping):
        return None
    try:
        return PolicyState.from_dict(dict(raw))
    except ValueError:
        return None  # a hand-edited or older-format state: start a fresh window rather than fail the model


def autoscaling_status(
    decision: Decision, previous: Mapping[str, Any] | None, current_replicas: int, now_rfc3339: str
) -> dict[str, Any]:
    """The new `status.autoscaling` after `decision`; unchanged fields keep their values (no write churn)."""
    prev = dict(previous or {})
    recent = list(prev.get("recentDecisions") or [])
    last_scale = prev.get("lastScaleTime")
    if decision.desired_replicas != current_replicas:
        last_scale = now_rfc3339
        recent.append(
            {
                "time": now_rfc3339,
                "from": current_replicas,
                "to": decision.desired_replicas,
                "reason": decision.reason,
                "message": decision.message,
            }
        )
    message = decision.message
    zero_in_s = decision.signals.get(SIGNAL_SCALE_TO_ZERO_IN_S)
    now = _parse_rfc3339(now_rfc3339)
    if zero_in_s is not None and now is not None:  # the message is refreshed rarely: say when, not only how soon
        at = now + dt.timedelta(seconds=math.ceil(zero_in_s))
        message += f", at {at.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    out: dict[str, Any] = {
        DESIRED_REPLICAS: decision.desired_replicas,
        "reason": decision.reason,
        "message": message,
        "signals": dict(decision.signals),
        "state": decision.new_state.to_dict(),
        "recentDecisions": recent[-RECENT_DECISIONS_KEPT:],
    }
    if last_scale is not None:
        out["lastScaleTime"] = last_scale
    return out

"""The single reconcile function: a DialogueModel and its observed children in, desired children and status out.

Contract: `reconcile()` is pure and deterministic. It never branches on what changed, only on what is. Given
the same inputs twice it returns the same plan; when the observed children already match, `plan.apply` is empty
and `plan.status` equals the status written last time, so the shell makes no write.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dialogue_operator.api import BASE_VARIANT, DialogueModelStatus
from dialogue_operator.api import status as st
from dialogue_operator.api.status import Condition, VariantStatus
from dialogue_operator.reconcile.children import (
    build_config_map,
    build_network_policy,
    build_pdb,
    build_service,
    endpoint,
)
from dialogue_operator.reconcile.conditions import is_failure, missing_problem, worst_problem
from dialogue_operator.reconcile.deployment import build_deployment
from dialogue_operator.reconcile.gpu_products import with_products
from dialogue_operator.reconcile.hashing import needs_apply
from dialogue_operator.reconcile.labels import child_name, model_selector, selector_string
from dialogue_operator.reconcile.model import ModelObject
from dialogue_operator.reconcile.observed import ChildKey, Observed, timestamp
from dialogue_operator.reconcile.variant_condition import CONDITION_VARIANT_READY, variant_condition
from dialogue_operator.settings import Settings

MANAGED_KINDS = ("ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service")


@dataclass(frozen=True)
class EventNote:
    """A Kubernetes Event to post on the DialogueModel (a transition a person wants in `kubectl describe`)."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What the shell must do: apply these objects, delete these children, write this status, post these events."""

    desired: list[dict[str, Any]]
    apply: list[dict[str, Any]]
    delete: list[ChildKey]
    status: dict[str, Any]
    status_changed: bool
    events: list[EventNote] = field(default_factory=list)


def _valid_weights(raw: Any, valid: set[str]) -> dict[str, int] | None:
    """Weights naming known variants, each 0-100, summing to 100; else None."""
    if not isinstance(raw, Mapping) or not raw:
        return None
    weights = {str(k): v for k, v in raw.items()}
    if not set(weights) <= valid or not all(isinstance(v, int) and 0 <= v <= 100 for v in weights.values()):
        return None
    return weights if sum(weights.values()) == 100 else None


def variant_weights(model: ModelObject) -> dict[str, int]:
    """Traffic weights per active variant (an active variant gets a Deployment, even at weight 0).

    The rollout state machine owns the split and keeps it in `status.rollout.weights`; that wins when valid.
    Otherwise: without a rollout the base model takes everything; with one, the weights last written to
    `status.variants` are kept and the target is warmed up at weight 0.
    """
    spec = model.spec
    valid = {BASE_VARIANT, *(v.name for v in spec.variants)}
    from_rollout = _valid_weights((model.status.rollout or {}).get("weights"), valid)
    if from_rollout is not None:
        return dict(sorted(from_rollout.items()))
    if spec.rollout is None:
        return {BASE_VARIANT: 100}
    previous = {v.name: v.weight for v in model.status.variants if v.name in valid and v.weight > 0}
    weights = previous if sum(previous.values()) == 100 else {BASE_VARIANT: 100}
    target = spec.variant(spec.rollout.target_variant)
    if target is None or target.compression is None:  # a compressed target has no weights until its Job ran
        weights.setdefault(spec.rollout.target_variant, 0)
    return dict(sorted(weights.items()))


def total_replicas(model: ModelObject) -> int:
    """Replicas across variants: spec.replicas, or the autoscaler's decision within its bounds."""
    spec = model.spec
    if spec.autoscaling_enabled and spec.autoscaling is not None:
        desired = (model.status.autoscaling or {}).get("desiredReplicas")
        wanted = int(desired) if isinstance(desired, int | float) else spec.autoscaling.min_replicas
        low, high = spec.autoscaling.replica_range()  # the autoscaler applies the bounds in force now (schedules)
        return max(low, min(high, wanted))
    return 1 if spec.replicas is None else spec.replicas


def split_replicas(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Replicas per variant in proportion to weight; a warming variant (weight 0) gets one pod while serving."""
    return {
        name: (math.ceil(total * weight / 100) if weight > 0 else min(1, total)) for name, weight in weights.items()
    }


def desired_children(
    model: ModelObject, settings: Settings, weights: Mapping[str, int], replicas: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Every child the model should have, in a stable order."""
    children: list[dict[str, Any]] = [build_service(model), build_pdb(model)]
    if model.spec.security.network_policy:
        children.append(build_network_policy(model, settings))
    for variant in sorted(weights):
        children.append(build_config_map(model, variant, settings))
        children.append(build_deployment(model, variant, settings, replicas[variant]))
    return children


def _condition(
    previous: DialogueModelStatus, type_: str, status: str, reason: str, message: str, *, generation: int, now: str
) -> Condition:
    """A condition that keeps its lastTransitionTime while its status stays the same."""
    old = previous.condition(type_)
    since = old.last_transition_time if old is not None and old.status == status else now
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def not_ready_since(previous: DialogueModelStatus, now: datetime) -> datetime:
    """Since when the model has not been Ready: the last written Ready=False's lastTransitionTime (for a new model
    its first status), else now. A missing Secret or claim is timed from here (conditions.GRACE_PERIOD)."""
    old = previous.condition(st.CONDITION_READY)
    since = timestamp(old.last_transition_time) if old is not None and old.status == "False" else None
    return since or now


def build_status(
    model: ModelObject,
    observed: Observed,
    *,
    settings: Settings,
    weights: Mapping[str, int],
    replicas: Mapping[str, int],
    now: datetime,
) -> DialogueModelStatus:
    """Status from what the children report; conditions name the most telling pod problem."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    pods = [p for p in observed.pods if not p.terminating]
    variants: list[VariantStatus] = []
    for name in sorted(weights):
        dep = observed.deployment(child_name(model, name))
        ready_count = dep.ready_replicas if dep else 0
        count = dep.replicas if dep else 0
        want = replicas[name]
        problem = worst_problem(p for p in pods if p.variant == name)
        if want == 0:
            phase = "ScaledToZero"
        elif is_failure(problem, now):
            phase = "Degraded"
        elif dep is not None and dep.up_to_date and ready_count >= want and dep.updated_replicas >= want:
            phase = "Ready"
        elif ready_count > 0:
            phase = "Progressing"
        else:
            phase = "Pending"
        variants.append(
            VariantStatus(name=name, weight=weights[name], replicas=count, ready_replicas=ready_count, phase=phase)
        )
    total_want = sum(replicas.values())
    total_ready = sum(v.ready_replicas for v in variants)
    serving = [v for v in variants if v.weight > 0]
    problem = with_products(worst_problem(pods), model.spec.resources.gpu_product, observed.gpu_products)
    gen, prev = model.generation, model.status
    # A missing Secret or claim: not Ready whatever the pods say (KWOK's are Ready at once).
    missing = missing_problem(observed.missing, not_ready_since(prev, now))
    problem = missing or problem
    failing = is_failure(problem, now)

    def cond(type_: str, status: str, reason: str, message: str) -> Condition:
        return _condition(prev, type_, status, reason, message, generation=gen, now=stamp)

    if missing is not None:
        ready = cond(st.CONDITION_READY, "False", missing.reason, missing.message)
    elif total_want == 0:
        ready = cond(st.CONDITION_READY, "False", st.REASON_SCALED_TO_ZERO, "scaled to zero replicas")
    elif serving and all(v.ready_replicas > 0 for v in serving):
        ready = cond(st.CONDITION_READY, "True", st.REASON_AVAILABLE, f"{total_ready}/{total_want} replicas ready")
    elif problem is not None:
        ready = cond(st.CONDITION_READY, "False", problem.reason, problem.message)
    else:
        ready = cond(st.CONDITION_READY, "False", st.REASON_PENDING, "waiting for runtime pods")
    if problem is not None and failing:  # stalled: kstatus reads Progressing=False with Degraded=True
        progressing = cond(st.CONDITION_PROGRESSING, "False", problem.reason, problem.message)
    elif missing is None and all(v.phase in {"Ready", "ScaledToZero"} for v in variants):
        progressing = cond(st.CONDITION_PROGRESSING, "False", st.REASON_AS_EXPECTED, "all variants up to date")
    else:
        detail = problem.message if problem is not None else f"{total_ready}/{total_want} replicas ready"
        reason = problem.reason if problem is not None else st.REASON_PENDING
        progressing = cond(st.CONDITION_PROGRESSING, "True", reason, detail)
    if problem is not None and failing:
        degraded = cond(st.CONDITION_DEGRADED, "True", problem.reason, problem.message)
    else:
        degraded = cond(st.CONDITION_DEGRADED, "False", st.REASON_AS_EXPECTED, "")
    conditions = [ready, progressing, degraded]
    variant = variant_condition(model)
    if variant is not None:
        conditions.append(cond(CONDITION_VARIANT_READY, *variant))
    return DialogueModelStatus(
        observed_generation=gen,
        conditions=conditions,
        replicas=sum(v.replicas for v in variants),
        ready_replicas=total_ready,
        selector=selector_string(model_selector(model)),
        endpoint=endpoint(model, settings),
        traffic=",".join(f"{v.name}={v.weight}" for v in variants if v.weight > 0) or "none",
        variants=variants,
        autoscaling=prev.autoscaling,
        rollout=prev.rollout,
    )


def invalid_status(
    model_status: DialogueModelStatus, generation: int, message: str, now: datetime
) -> DialogueModelStatus:
    """Status for a spec the operator cannot serve: Ready=False, reason InvalidSpec; children are left alone."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    cond = [
        _condition(
            model_status, st.CONDITION_READY, "False", st.REASON_INVALID_SPEC, message, generation=generation, now=stamp
        ),
        _condition(
            model_status,
            st.CONDITION_PROGRESSING,
            "False",
            st.REASON_INVALID_SPEC,
            message,
            generation=generation,
            now=stamp,
        ),
        _condition(
            model_status,
            st.CONDITION_DEGRADED,
            "True",
            st.REASON_INVALID_SPEC,
            message,
            generation=generation,
            now=stamp,
        ),
    ]
    return model_status.model_copy(update={"observed_generation": generation, "conditions": cond})


def transition_events(before: DialogueModelStatus, after: DialogueModelStatus) -> list[EventNote]:
    """Events for a changed Ready condition (status or reason)."""
    old, new = before.condition(st.CONDITION_READY), after.condition(st.CONDITION_READY)
    if new is None or (old is not None and (old.status, old.reason) == (new.status, new.reason)):
        return []
    # Waiting for pods and a deliberate scale to zero (the autoscaler's idle timer) are expected, not warnings.
    expected = {st.REASON_PENDING, st.REASON_MODEL_LOADING, st.REASON_SCALED_TO_ZERO}
    kind = "Normal" if new.status == "True" or new.reason in expected else "Warning"
    return [EventNote(kind, new.reason, new.message or new.reason)]


def with_served_name_conflict(
    status: DialogueModelStatus, model: ModelObject, message: str, now: datetime
) -> DialogueModelStatus:
    """Ready=False, Degraded=True, reason ServedNameConflict: an older model of the namespace holds the served
    name. Terminal: it lasts until one of the two models changes its name or goes."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    verdict = {st.CONDITION_READY: "False", st.CONDITION_PROGRESSING: "False", st.CONDITION_DEGRADED: "True"}

    def conflict(type_: str) -> Condition:
        return _condition(
            model.status,
            type_,
            verdict[type_],
            st.REASON_SERVED_NAME_CONFLICT,
            message,
            generation=model.generation,
            now=stamp,
        )

    conditions = [conflict(c.type) if c.type in verdict else c for c in status.conditions]
    return status.model_copy(update={"conditions": conditions})


def status_dict(status: DialogueModelStatus) -> dict[str, Any]:
    """The status as written to the API (camelCase, no nulls)."""
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def reconcile(
    model: ModelObject,
    observed: Observed,
    settings: Settings,
    now: datetime,
    weights: Mapping[str, int] | None = None,
    *,
    served_name_conflict: str | None = None,
) -> Plan:
    """Plan the children and the status of `model` (weights: the rollout controller's split, if any;
    served_name_conflict: why an older model of the namespace holds the served name, which makes Ready False)."""
    weights = dict(sorted((weights or variant_weights(model)).items()))
    replicas = split_replicas(total_replicas(model), weights)
    desired = desired_children(model, settings, weights, replicas)
    wanted_keys = {(obj["kind"], obj["metadata"]["name"]) for obj in desired}
    to_apply = [
        obj for obj in desired if needs_apply(obj, observed.children.get((obj["kind"], obj["metadata"]["name"])))
    ]
    to_delete = sorted(key for key in observed.children if key not in wanted_keys and key[0] in MANAGED_KINDS)
    status = build_status(model, observed, settings=settings, weights=weights, replicas=replicas, now=now)
    if served_name_conflict is not None:
        status = with_served_name_conflict(status, model, served_name_conflict, now)
    new_status = status_dict(status)
    changed = new_status != status_dict(model.status)
    return Plan(
        desired=desired,
        apply=to_apply,
        delete=to_delete,
        status=new_status,
        status_changed=changed,
        events=transition_events(model.status, status) if changed else [],
    )

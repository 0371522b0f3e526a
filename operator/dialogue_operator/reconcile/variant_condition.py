"""Derives the `VariantReady` condition, the step of the rollout's target variant, from status.rollout (pure).

The rollout shell keeps its state machine in `status.rollout` (phase, weights, the last analysis, and the
finished compression and evaluation Jobs' results); the reconcile turns it into one condition a person reads
with `kubectl describe` or `kubectl wait --for=condition=VariantReady`:

- False while the target is being built: reason Pending, Compressing (scheme, calibration, Job name) or
  Evaluating (golden set, threshold, Job name; the message says whether the artifact was reused);
- True once it serves: reason Canary (step and weight) or Paused, then Promoted;
- False when it never will: the failed Job's own reason (CalibrationSetMissing, StorageFull, InvalidRecipe,
  ModelNotFound, GoldenSetMissing, ...; CompressionFailed or EvaluationFailed when it gave none) quoting its
  error with paths as the spec names them, QualityGateFailed (the gate's numbers), RolledBack (the failed
  analysis's numbers, a crash-looping or never Ready canary), Aborted. The base keeps serving, so the model's
  Ready condition is not affected.

The condition carries no ticking clock (elapsed seconds would rewrite status on every reconcile):
`lastTransitionTime` says since when a step runs, and the Jobs' logs print each step with its duration.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dialogue_operator.api import BASE_VARIANT
from dialogue_operator.api import status as st
from dialogue_operator.reconcile.jobs import build_compression_job, build_evaluation_job
from dialogue_operator.reconcile.model import InvalidSpec, ModelObject

CONDITION_VARIANT_READY = st.CONDITION_VARIANT_READY
REASON_ROLLED_BACK = "RolledBack"
MESSAGE_LIMIT = 1024
# The Job builders need an image to render a Job; only the Job's name (a hash of its arguments) is used here.
_ANY_IMAGE = "job-name-only"


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _job_name(model: ModelObject, variant: str, *, compress: bool) -> str:
    try:
        builder = build_compression_job if compress else build_evaluation_job
        return str(builder(model, variant, _ANY_IMAGE)["metadata"]["name"])
    except InvalidSpec:
        return "?"


def _live_step(rollout: Mapping[str, Any], key: str) -> str:
    """`now: <step>` while the Job reports one (status.rollout.<key> with state Running), else ''."""
    job = rollout.get(key) or {}
    return f"now: {job['step']}" if job.get("state") == "Running" and job.get("step") else ""


def _compressing(model: ModelObject, variant: str, rollout: Mapping[str, Any]) -> str:
    spec = model.spec.variant(variant)
    recipe = spec.compression if spec is not None else None
    live = _live_step(rollout, "compression")
    if recipe is None:
        return f"{variant}: compressing" + (f" ({live})" if live else "")
    if recipe.scheme == "FP8_DYNAMIC":
        how = "dynamic FP8, no calibration"
    else:
        cal = recipe.calibration
        samples = f"{cal.num_samples} samples of {cal.dataset}" if cal is not None else "the job's default set"
        how = f"GPTQ calibration on {samples}"
        if recipe.group_size is not None:
            how += f", group size {recipe.group_size}"
    job = _job_name(model, variant, compress=True)
    return _clip(f"{variant}: compressing {recipe.scheme} ({how}; Job {job}, {live or 'steps in its log'})")


def _compressed(rollout: Mapping[str, Any]) -> str:
    """What the finished compression Job reported: reused or produced, where, how long."""
    done = rollout.get("compression") or {}
    if done.get("state") != "Succeeded":
        return ""
    try:
        result = json.loads(str(done.get("message") or ""))
    except ValueError:
        return "compressed"
    if not isinstance(result, dict):
        return "compressed"
    where = result.get("artifact") or "?"
    if result.get("reused"):
        return f"artifact reused from {where} (nothing compressed)"
    timings = result.get("timingsSeconds") or {}
    took = sum(v for v in timings.values() if isinstance(v, int | float)) if isinstance(timings, dict) else 0
    return f"compressed into {where} in {took:.0f} s"


def _gate_numbers(rollout: Mapping[str, Any]) -> str:
    ev = rollout.get("evaluation") or {}
    if ev.get("state") != "Succeeded" or ev.get("recovery") is None:
        return ""
    text = f"gate: recovery {ev.get('recovery')} (min {ev.get('threshold')}), agreement {ev.get('agreement')}"
    return text + (f" ({ev['message']})" if ev.get("message") else "")


def _evaluating(model: ModelObject, variant: str, rollout: Mapping[str, Any]) -> str:
    spec = model.spec.variant(variant)
    gate = spec.gate if spec is not None else None
    what = f" on {gate.golden_set}, minRecovery {gate.min_recovery}" if gate is not None else ""
    job = _job_name(model, variant, compress=False)
    done = _compressed(rollout)
    live = _live_step(rollout, "evaluation")
    text = f"{variant}: quality gate against {BASE_VARIANT}{what} (Job {job}" + (f", {live})" if live else ")")
    return _clip(text + (f"; {done}" if done else ""))


def _notes(rollout: Mapping[str, Any]) -> str:
    notes = [n for n in (_compressed(rollout), _gate_numbers(rollout)) if n]
    return f" ({'; '.join(notes)})" if notes else ""


def variant_condition(model: ModelObject) -> tuple[str, str, str] | None:
    """(status, reason, message) of VariantReady for the rollout's target, or None when there is no rollout."""
    rollout = model.status.rollout or {}
    spec_target = model.spec.rollout.target_variant if model.spec.rollout is not None else None
    target = str(rollout.get("targetVariant") or "")
    if spec_target in (None, BASE_VARIANT) and target in ("", BASE_VARIANT):
        return None  # nothing rolled out: the base serves, as the Ready condition says
    if spec_target is not None and spec_target != target:
        return "False", st.REASON_PENDING, f"{spec_target}: starting"
    phase = str(rollout.get("phase") or "")
    reason, message = str(rollout.get("reason") or ""), str(rollout.get("message") or "")
    weight = (rollout.get("weights") or {}).get(target, 0)
    steps = model.spec.rollout.steps if model.spec.rollout is not None else []
    if phase == "Pending":
        return "False", st.REASON_PENDING, f"{target}: starting"
    if phase == "Compressing":
        return "False", "Compressing", _compressing(model, target, rollout)
    if phase == "Evaluating":
        return "False", "Evaluating", _evaluating(model, target, rollout)
    if phase in ("Canary", "Paused"):
        at = f"step {int(rollout.get('stepIndex') or 0) + 1}/{len(steps)} at {weight}%" if weight else "starting"
        return "True", phase, f"{target}: canary {at}{_notes(rollout)}"
    if phase == "Promoted":
        return "True", "Promoted", f"{target} is the stable variant{_notes(rollout)}"
    if phase == "RolledBack":
        return "False", REASON_ROLLED_BACK, _clip(f"{target} rolled back, {BASE_VARIANT} serves: {reason}: {message}")
    if phase == "Failed":
        return "False", reason or "Failed", _clip(f"{target} gets no traffic: {message}")
    if phase == "Aborted":
        return "False", "Aborted", _clip(f"{target}: {message}")
    return "False", st.REASON_PENDING, f"{target}: {phase or 'starting'}"

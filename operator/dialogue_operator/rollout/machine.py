"""The progressive-rollout state machine (pure: no clock, no I/O): `step(state, observation, spec, now_s)`.

Phases: Pending -> [Compressing] -> [Evaluating] -> Canary(step i, weight w) <-> Paused -> Promoted, or
RolledBack (analysis failed, canary crash-looping or never Ready), Aborted (spec.abort or rollout removed),
Failed (compression or evaluation failed, with the Job's own reason, or the quality gate refused the variant:
no traffic ever moved).

Contract with the shell (the operator's reconcile):
- `now_s` is wall-clock Unix time in seconds (the state survives operator restarts, so no monotonic clock).
- `actions` are idempotent desired-state instructions, returned on every call while they hold.
- `events` are returned once, on the transition they describe; record them as Kubernetes Events.
- `new_state.weights` (percent per variant) is what the operator publishes in `status.variants[].weight`.
- A step completes when every configured condition holds (`step_duration_s` elapsed since the canary got
  its weight, `step_requests` canary requests in the step) AND the analysis passes; then the weight moves to
  the next step, or the target is promoted after the last one. A failing analysis rolls back at once, also
  while paused. A finished rollout restarts only for a new target or revision; an aborted one also restarts
  when `abort` is cleared.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from dialogue_operator.rollout.analysis import analyze, window
from dialogue_operator.rollout.model import (
    TERMINAL_PHASES,
    Action,
    ActionKind,
    Event,
    JobState,
    Observation,
    Phase,
    RolloutSpec,
    RolloutState,
    VariantMetrics,
)

_MAX_TRANSITIONS_PER_STEP = 8
# A failed Job's reason is its own (`StorageFull`, `CalibrationSetMissing`, `GoldenSetMissing`, ...: what an alert
# or `kubectl wait` can match); these are used when it gave none (a crash, a refused spec, a deadline).
REASON_COMPRESSION_FAILED = "CompressionFailed"
REASON_EVALUATION_FAILED = "EvaluationFailed"


class StepResult(NamedTuple):
    state: RolloutState
    actions: tuple[Action, ...]
    events: tuple[Event, ...]


def _normal(reason: str, message: str) -> Event:
    return Event(type="Normal", reason=reason, message=message)


def _warning(reason: str, message: str) -> Event:
    return Event(type="Warning", reason=reason, message=message)


def _all_stable(state: RolloutState) -> dict[str, int]:
    weights = {state.stable_variant: 100}
    if state.target_variant and state.target_variant != state.stable_variant:
        weights[state.target_variant] = 0
    return weights


def _goto(state: RolloutState, phase: Phase, now_s: float, reason: str = "", message: str = "") -> RolloutState:
    return state.model_copy(update={"phase": phase, "phase_since_s": now_s, "reason": reason, "message": message})


def _end_without_traffic(
    state: RolloutState, phase: Phase, now_s: float, reason: str, message: str
) -> tuple[RolloutState, Event]:
    ended = _goto(state, phase, now_s, reason, message).model_copy(
        update={"weights": _all_stable(state), "step_started_s": None, "baseline": None}
    )
    return ended, _warning(reason, message)


def _compressed_event(target: str, message: str) -> Event:
    """CompressionSucceeded, or ArtifactReused when the Job found the finished artifact (its JSON result says)."""
    try:
        result = json.loads(message) if message else {}
    except ValueError:
        result = {}
    if not isinstance(result, dict):
        result = {}
    where = f" ({result['artifact']})" if result.get("artifact") else ""
    if result.get("reused"):
        return _normal("ArtifactReused", f"{target}: the compressed artifact exists{where}; nothing compressed")
    return _normal("CompressionSucceeded", f"{target} compressed{where}")


def _steady_actions(state: RolloutState) -> tuple[Action, ...]:
    target = state.target_variant
    if target is None:
        return ()
    if state.phase is Phase.COMPRESSING:
        return (Action(kind=ActionKind.ENSURE_COMPRESSION_JOB, variant=target),)
    if state.phase is Phase.EVALUATING:
        return (Action(kind=ActionKind.ENSURE_EVALUATION_JOB, variant=target),)
    if state.phase in (Phase.CANARY, Phase.PAUSED):
        return (Action(kind=ActionKind.ENSURE_CANARY, variant=target),)
    if state.phase in (Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED) and target != state.stable_variant:
        return (Action(kind=ActionKind.REMOVE_CANARY, variant=target),)
    if state.phase is Phase.PROMOTED and state.previous_stable_variant:
        return (Action(kind=ActionKind.REMOVE_VARIANT, variant=state.previous_stable_variant),)
    return ()


def _start(state: RolloutState, spec: RolloutSpec, now_s: float) -> tuple[RolloutState, list[Action], list[Event]]:
    actions: list[Action] = []
    events: list[Event] = []
    old = state.target_variant
    if old and old not in (spec.target_variant, state.stable_variant) and state.phase not in TERMINAL_PHASES:
        actions.append(Action(kind=ActionKind.REMOVE_CANARY, variant=old))
        events.append(_warning("RolloutSuperseded", f"rollout to {old} replaced by a rollout to {spec.target_variant}"))
    fresh = RolloutState(
        phase=Phase.PENDING,
        stable_variant=state.stable_variant,
        target_variant=spec.target_variant,
        revision=spec.revision,
        weights={state.stable_variant: 100, spec.target_variant: 0},
        phase_since_s=now_s,
        stable_ttft_p95_reference_s=state.stable_ttft_p95_reference_s,
    )
    events.append(_normal("RolloutStarted", f"rolling out {spec.target_variant} beside {state.stable_variant}"))
    return fresh, actions, events


def _enter_canary(state: RolloutState, spec: RolloutSpec, now_s: float) -> tuple[RolloutState, Event]:
    entered = _goto(state, Phase.CANARY, now_s).model_copy(
        update={"step_index": 0, "weights": _all_stable(state), "step_started_s": None, "baseline": None}
    )
    return entered, _normal(
        "CanaryStarted", f"canary {spec.target_variant} deploying; traffic steps {list(spec.steps)}"
    )


def _set_canary_weight(state: RolloutState, weight: int) -> dict[str, int]:
    assert state.target_variant is not None
    return {state.stable_variant: 100 - weight, state.target_variant: weight}


def _canary(state: RolloutState, obs: Observation, spec: RolloutSpec, now_s: float) -> tuple[RolloutState, list[Event]]:
    target = spec.target_variant
    if state.step_started_s is None:  # waiting for the canary to become Ready before it gets traffic
        if not obs.canary_ready:
            since = state.phase_since_s if state.phase_since_s is not None else now_s
            if spec.ready_timeout_s is not None and now_s - since > spec.ready_timeout_s:
                msg = (
                    f"canary {target} not Ready after {now_s - since:.0f} s (readyTimeout {spec.ready_timeout_s:.0f} s)"
                )
                ended, event = _end_without_traffic(state, Phase.ROLLED_BACK, now_s, "CanaryNotReady", msg)
                return ended, [event]
            return state, []
        weight = spec.steps[state.step_index]
        started = state.model_copy(
            update={"step_started_s": now_s, "weights": _set_canary_weight(state, weight), "baseline": obs.metrics}
        )
        return started, [
            _normal("StepStarted", f"step {state.step_index + 1}/{len(spec.steps)}: {target} at {weight}%")
        ]
    return _judge(state, obs, spec, now_s, advance=True)


def _judge(
    state: RolloutState, obs: Observation, spec: RolloutSpec, now_s: float, *, advance: bool
) -> tuple[RolloutState, list[Event]]:
    """Analyses the current step; rolls back on failure, advances (when allowed) when the step completes."""
    target = spec.target_variant
    if obs.metrics is None:
        return state, []
    if state.baseline is None:  # metrics were unknown when the step started: the window starts now
        return state.model_copy(update={"baseline": obs.metrics}), []
    canary_now = obs.metrics.get(target, VariantMetrics())  # not yet seen by the gateway: no samples
    stable_now = obs.metrics.get(state.stable_variant)
    canary_w = window(canary_now, state.baseline.get(target))
    stable_w = window(stable_now, state.baseline.get(state.stable_variant)) if stable_now else None
    result, reference = analyze(
        state.step_index + 1, canary_w, stable_w, state.stable_ttft_p95_reference_s, spec.analysis
    )
    state = state.model_copy(update={"last_analysis": result, "stable_ttft_p95_reference_s": reference})
    if result.verdict == "Fail":
        msg = f"step {state.step_index + 1} at {state.weights.get(target, 0)}%: " + "; ".join(result.reasons)
        ended, event = _end_without_traffic(state, Phase.ROLLED_BACK, now_s, "AnalysisFailed", msg)
        return ended, [event]
    if not advance or result.verdict != "Pass" or state.step_started_s is None:
        return state, []
    if spec.step_duration_s is not None and now_s - state.step_started_s < spec.step_duration_s:
        return state, []
    if spec.step_requests is not None and canary_w.requests < spec.step_requests:
        return state, []
    if state.step_index + 1 >= len(spec.steps):
        promoted = _goto(state, Phase.PROMOTED, now_s, "Promoted", f"{target} is the stable variant").model_copy(
            update={
                "stable_variant": target,
                "previous_stable_variant": state.stable_variant,
                "weights": {target: 100, state.stable_variant: 0},
                "step_started_s": None,
                "baseline": None,
            }
        )
        msg = f"{target} promoted after {len(spec.steps)} steps; {state.stable_variant} retired"
        return promoted, [_normal("Promoted", msg)]
    nxt = state.step_index + 1
    weight = spec.steps[nxt]
    advanced = state.model_copy(
        update={
            "step_index": nxt,
            "weights": _set_canary_weight(state, weight),
            "step_started_s": now_s,
            "baseline": obs.metrics,
        }
    )
    return advanced, [_normal("StepStarted", f"step {nxt + 1}/{len(spec.steps)}: {target} at {weight}%")]


def _transition(
    state: RolloutState, obs: Observation, spec: RolloutSpec, now_s: float
) -> tuple[RolloutState, list[Event]]:
    """One transition (or none) from the current phase."""
    target = spec.target_variant
    phase = state.phase
    if phase is Phase.PENDING:
        if spec.needs_compression:
            return _goto(state, Phase.COMPRESSING, now_s), [_normal("CompressionStarted", f"compressing {target}")]
        if spec.quality_gate:
            return _goto(state, Phase.EVALUATING, now_s), [_normal("EvaluationStarted", f"evaluating {target}")]
        entered, event = _enter_canary(state, spec, now_s)
        return entered, [event]
    if phase is Phase.COMPRESSING:
        if obs.compression.state is JobState.FAILED:
            msg = f"compression of {target} failed: {obs.compression.message or 'no message'}"
            reason = obs.compression.reason or REASON_COMPRESSION_FAILED
            ended, event = _end_without_traffic(state, Phase.FAILED, now_s, reason, msg)
            return ended, [event]
        if obs.compression.state is JobState.SUCCEEDED:
            done = _compressed_event(target, obs.compression.message)
            if spec.quality_gate:
                return _goto(state, Phase.EVALUATING, now_s), [
                    done,
                    _normal("EvaluationStarted", f"evaluating {target}"),
                ]
            entered, event = _enter_canary(state, spec, now_s)
            return entered, [done, event]
        return state, []
    if phase is Phase.EVALUATING:
        ev = obs.evaluation
        if ev.state is JobState.FAILED:
            msg = f"evaluation of {target} failed: {ev.message or 'no message'}"
            reason = ev.reason or REASON_EVALUATION_FAILED
            ended, event = _end_without_traffic(state, Phase.FAILED, now_s, reason, msg)
            return ended, [event]
        if ev.state is JobState.SUCCEEDED:
            numbers = f"recovery {ev.recovery}, agreement {ev.agreement}, threshold {ev.threshold}"
            if ev.eligible is not True:
                msg = f"quality gate refused {target}: {numbers}" + (f" ({ev.message})" if ev.message else "")
                ended, event = _end_without_traffic(state, Phase.FAILED, now_s, "QualityGateFailed", msg)
                return ended, [event]
            entered, event = _enter_canary(state, spec, now_s)
            return entered, [_normal("QualityGatePassed", f"{target} eligible: {numbers}"), event]
        return state, []
    if phase is Phase.CANARY:
        if spec.paused:
            elapsed = now_s - state.step_started_s if state.step_started_s is not None else 0.0
            paused = _goto(state, Phase.PAUSED, now_s, "Paused", "paused by spec.rollout.paused").model_copy(
                update={"step_started_s": None, "step_elapsed_before_pause_s": elapsed}
            )
            return paused, [
                _normal(
                    "RolloutPaused",
                    f"paused at step {state.step_index + 1}, {target} at {state.weights.get(target, 0)}%",
                )
            ]
        return _canary(state, obs, spec, now_s)
    if phase is Phase.PAUSED:
        if not spec.paused:
            timer_ran = state.weights.get(target, 0) > 0
            resumed = _goto(state, Phase.CANARY, now_s).model_copy(
                update={
                    "step_started_s": now_s - state.step_elapsed_before_pause_s if timer_ran else None,
                    "step_elapsed_before_pause_s": 0.0,
                }
            )
            return resumed, [_normal("RolloutResumed", f"resumed at step {state.step_index + 1}")]
        if state.weights.get(target, 0) > 0:
            return _judge(state, obs, spec, now_s, advance=False)  # roll back a failing canary even when paused
        return state, []
    return state, []


def step(state: RolloutState, observation: Observation, spec: RolloutSpec | None, now_s: float) -> StepResult:
    """Advances the rollout as far as the observation allows; see the module docstring for the contract."""
    actions: list[Action] = []
    events: list[Event] = []
    active = state.phase not in TERMINAL_PHASES and state.phase is not Phase.PENDING
    if spec is None:
        if active and state.target_variant:
            msg = f"spec.rollout removed during the rollout of {state.target_variant}"
            state, event = _end_without_traffic(state, Phase.ABORTED, now_s, "RolloutRemoved", msg)
            events.append(event)
        return StepResult(state, (*_steady_actions(state),), tuple(events))
    if spec.target_variant == state.stable_variant:  # nothing to roll out: the target already serves
        if active and state.target_variant and state.target_variant != state.stable_variant:
            msg = f"rollout of {state.target_variant} stopped: the target is now the stable {state.stable_variant}"
            state, event = _end_without_traffic(state, Phase.ABORTED, now_s, "RolloutSuperseded", msg)
            events.append(event)
        return StepResult(state, _steady_actions(state), tuple(events))
    is_new = state.target_variant != spec.target_variant or state.revision != spec.revision
    retry_abort = state.phase is Phase.ABORTED and not spec.abort
    if is_new or retry_abort:
        state, start_actions, start_events = _start(state, spec, now_s)
        actions += start_actions
        events += start_events
    if state.phase not in TERMINAL_PHASES:
        if spec.abort:
            msg = f"rollout of {spec.target_variant} aborted by spec.rollout.abort at phase {state.phase.value}"
            state, event = _end_without_traffic(state, Phase.ABORTED, now_s, "RolloutAborted", msg)
            events.append(event)
        elif observation.canary_crash_looping and state.phase in (Phase.CANARY, Phase.PAUSED):
            detail = f": {observation.canary_message}" if observation.canary_message else ""
            msg = f"canary {spec.target_variant} is crash-looping{detail}"
            state, event = _end_without_traffic(state, Phase.ROLLED_BACK, now_s, "CanaryCrashLooping", msg)
            events.append(event)
    for _ in range(_MAX_TRANSITIONS_PER_STEP):
        if state.phase in TERMINAL_PHASES:
            break
        before = state
        state, new_events = _transition(state, observation, spec, now_s)
        events += new_events
        if state.phase is before.phase:  # a step advance or a wait ends the call; the next one judges afresh
            break
    return StepResult(state, (*actions, *_steady_actions(state)), tuple(events))

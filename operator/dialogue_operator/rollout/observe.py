"""Turns Job and Pod objects (plain dicts, as read from the API) into rollout observations (pure).

The compression and evaluation Jobs end with a one-line termination message (JSON on success, `<Reason>:
<message>` on failure); the shell passes the Job and its pods, and these functions decide the JobState, split
off the Job's own reason (so status, condition and Event carry `StorageFull` rather than a generic failure) and
carry the message whole, so a condition can quote the underlying error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dialogue_operator.rollout.model import EvaluationObservation, JobObservation, JobState

CRASH_LOOP_RESTARTS = 3
_JOB_REASON = re.compile(r"([A-Z][A-Za-z0-9]{1,62}): \S")
# Python exception names are what a crashed job's log tail starts with, never a reason a Job chose.
_NOT_A_REASON_SUFFIXES = ("Error", "Exception")


def termination_message(pods: Iterable[Mapping[str, Any]]) -> str:
    """The newest non-empty termination message of the pods' containers ('' if none)."""
    newest = ("", "")
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            for key in ("state", "lastState"):
                term = ((cs.get(key) or {}).get("terminated")) or {}
                message = str(term.get("message") or "").strip()
                finished = str(term.get("finishedAt") or "")
                if message and finished >= newest[0]:
                    newest = (finished, message)
    return newest[1]


_STEP_LINE = re.compile(r"^[a-z][a-z0-9-]*: (?P<step>[a-z][a-z0-9-]*) \.\.\.(?: \((?P<detail>.*)\))?$")
STEP_DETAIL_LIMIT = 160


def current_step(log_tail: str) -> str:
    """The step a running Job's log says it is in: its last `<job>: <step> ... (<detail>)` line (the Jobs'
    `Progress` lines) as `<step> (<detail>)`, the detail clipped; '' when the tail has none."""
    for line in reversed(log_tail.splitlines()):
        match = _STEP_LINE.match(line.strip())
        if match:
            detail = match.group("detail") or ""
            if len(detail) > STEP_DETAIL_LIMIT:
                detail = detail[: STEP_DETAIL_LIMIT - 3] + "..."
            return match.group("step") + (f" ({detail})" if detail else "")
    return ""


def running_pod(pods: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of the newest Running pod among a Job's pods (None if none runs): the one whose log has its step."""
    running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
    if not running:
        return None
    newest = max(running, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))
    return str((newest.get("metadata") or {}).get("name") or "") or None


def failure_reason(message: str) -> str | None:
    """The CamelCase reason a Job put before its message (`StorageFull: no space left ...` -> `StorageFull`).

    None when there is none: a multi-line message is the log tail the kubelet fell back to (the job crashed
    before writing its line), and `ValueError: ...` is a Python exception, not a reason the Job gave.
    """
    if "\n" in message:
        return None
    match = _JOB_REASON.match(message)
    if match is None or match.group(1).endswith(_NOT_A_REASON_SUFFIXES):
        return None
    return match.group(1)


def as_written(message: str, references: Mapping[str, str]) -> str:
    """The Job's message naming each path as the user wrote it: `/models/calib/x.jsonl` becomes
    `pvc://models/calib/x.jsonl (in the Job: /models/calib/x.jsonl)`; `references` maps container paths to
    the spec's references. Only whole paths are replaced (not `/models/calib/x.jsonl.bak`), in one pass."""
    paths = sorted((p for p, written in references.items() if p and p != written), key=len, reverse=True)
    if not paths:
        return message
    pattern = re.compile(rf"(?<![\w./-])({'|'.join(map(re.escape, paths))})(?![\w/-]|\.[\w/-])")
    return pattern.sub(lambda m: f"{references[m.group(1)]} (in the Job: {m.group(1)})", message)


def job_state(job: Mapping[str, Any] | None) -> JobState:
    if job is None:
        return JobState.ABSENT
    status = job.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True" or int(status.get("succeeded") or 0) > 0:
        return JobState.SUCCEEDED
    if conditions.get("Failed") == "True" or int(status.get("failed") or 0) > 0:
        return JobState.FAILED
    return JobState.RUNNING


def _failure_detail(job: Mapping[str, Any]) -> str:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Failed" and c.get("status") == "True":
            return f"{c.get('reason', 'Failed')}: {c.get('message', '')}".strip()
    return "the Job failed without a termination message"


def compression_observation(job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]) -> JobObservation:
    state = job_state(job)
    message = termination_message(pods)
    if state is not JobState.FAILED:
        return JobObservation(state=state, message=message)
    if not message and job is not None:
        return JobObservation(state=state, message=_failure_detail(job))
    return JobObservation(state=state, reason=failure_reason(message), message=message)


def evaluation_observation(job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]]) -> EvaluationObservation:
    state = job_state(job)
    message = termination_message(pods)
    if state is not JobState.SUCCEEDED:
        if state is not JobState.FAILED:
            return EvaluationObservation(state=state, message=message)
        if not message and job is not None:
            return EvaluationObservation(state=state, message=_failure_detail(job))
        return EvaluationObservation(state=state, reason=failure_reason(message), message=message)
    try:
        verdict = json.loads(message)
        return EvaluationObservation(
            state=state,
            eligible=bool(verdict["eligible"]),
            recovery=verdict.get("recovery"),
            agreement=verdict.get("agreement"),
            threshold=verdict.get("threshold"),
            message="; ".join(verdict.get("reasons") or []),
        )
    except (ValueError, KeyError, TypeError):
        # A finished Job whose verdict cannot be read is not a pass.
        return EvaluationObservation(state=JobState.FAILED, message=f"unreadable evaluation result: {message[:300]!r}")


def canary_status(pods: Iterable[Mapping[str, Any]]) -> tuple[bool, bool, str]:
    """(any pod Ready, crash-looping, why) for the canary variant's pods."""
    ready = False
    looping = False
    why = ""
    for pod in pods:
        status = pod.get("status") or {}
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            ready = True
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            last = (cs.get("lastState") or {}).get("terminated") or {}
            restarts = int(cs.get("restartCount") or 0)
            if waiting.get("reason") == "CrashLoopBackOff" or (
                restarts >= CRASH_LOOP_RESTARTS and int(last.get("exitCode") or 0) != 0
            ):
                looping = True
                detail = str(last.get("message") or waiting.get("message") or "").strip()
                name = (pod.get("metadata") or {}).get("name", "?")
                why = f"pod {name} restarted {restarts} times, last exit {last.get('exitCode', '?')}" + (
                    f": {detail}" if detail else ""
                )
    return ready, looping, why

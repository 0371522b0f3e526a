"""Derives the Ready, Progressing and Degraded conditions from what runtime pods report (pure).

The rule (kstatus and Argo CD turn red on `Degraded=True`), written once here in `is_failure`:

- a *terminal* problem (the kubelet will not get past it without a change: a crash loop, a config error, an
  image that is never pulled or has an invalid name, an OOM kill) is Degraded at once;
- a *transient* problem (a pod the scheduler cannot place yet, an image pull that is retried, a Secret or claim
  not there yet) is Progressing until it has lasted `GRACE_PERIOD`, measured from when it began, then Degraded;
- *progress* (a pod pending or being created, the engine loading its model) is never Degraded by time: the
  startup probe bounds a load (its failure restarts the engine, which shows as a crash) and a stuck pull turns
  into ErrImagePull / ImagePullBackOff.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from dialogue_operator.api import status as st
from dialogue_operator.reconcile.observed import CONFIG_ERROR_REASONS, IMAGE_PULL_REASONS, PodSummary

GPU_SHORTAGE_MARKER = "Insufficient nvidia.com/gpu"
# The scheduler's words for a claim that is not bound yet (`pod has unbound immediate PersistentVolumeClaims`)
# and for one that does not exist (`persistentvolumeclaim "models" not found`).
UNBOUND_CLAIM_MARKER = "unbound immediate PersistentVolumeClaims"
MISSING_CLAIM_PATTERN = re.compile(r'persistentvolumeclaim "[^"]*" not found')
MESSAGE_LIMIT = 1024
# How long a transient problem may last before it is a failure (Degraded=True): long enough for a Secret or
# claim applied with the model, a cluster autoscaler's node or a retried pull; short enough to page someone.
GRACE_PERIOD = timedelta(seconds=120)
# Pull failures the kubelet never retries into success: the image is absent with pullPolicy Never, or unparseable.
TERMINAL_IMAGE_REASONS = frozenset({"ErrImageNeverPull", "InvalidImageName"})


@dataclass(frozen=True)
class Problem:
    """The most telling reason runtime pods are not serving, with the message a person needs."""

    reason: str
    message: str
    severity: int  # higher wins when pods disagree
    terminal: bool = False  # will not clear by itself: Degraded at once
    since: datetime | None = None  # when a transient problem began (None: progress, never Degraded by time)


def is_failure(problem: Problem | None, now: datetime) -> bool:
    """Whether a problem is a failure (Degraded): terminal, or transient and older than GRACE_PERIOD."""
    if problem is None:
        return False
    return problem.terminal or (problem.since is not None and now - problem.since >= GRACE_PERIOD)


_SENTENCE_END = re.compile(r"(?<=\.)\s+")


def _without_echo(text: str) -> str:
    """Drop a sentence that only repeats the end of the one before (`... "models" not found. not found`)."""
    kept: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        bare = sentence.rstrip(".").strip()
        if kept and bare and kept[-1].rstrip(".").endswith(bare):
            continue
        kept.append(sentence)
    return " ".join(kept)


def _clip(text: str) -> str:
    text = _without_echo(" ".join(text.split()))
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _said(pod: PodSummary) -> str:
    """The kubelet's waiting message, prefixed with its reason unless the message already says it."""
    reason, message = pod.waiting_reason or "", pod.waiting_message or ""
    if not message or reason in message:
        return message or reason
    return f"{reason}: {message}"


def _unschedulable(pod: PodSummary, message: str) -> Problem:
    if GPU_SHORTAGE_MARKER in message:
        return Problem(st.REASON_INSUFFICIENT_GPU, _clip(message), 50, since=pod.unschedulable_since)
    if MISSING_CLAIM_PATTERN.search(message):
        return Problem(st.REASON_CLAIM_NOT_FOUND, _clip(message), 45, since=pod.unschedulable_since)
    if UNBOUND_CLAIM_MARKER in message:
        return Problem(st.REASON_CLAIM_PENDING, _clip(message), 45, since=pod.unschedulable_since)
    return Problem(st.REASON_UNSCHEDULABLE, _clip(message), 40, since=pod.unschedulable_since)


def _crashed(pod: PodSummary) -> Problem | None:
    crashed = pod.waiting_reason == "CrashLoopBackOff"
    if pod.terminated_reason == "OOMKilled" and (crashed or pod.restarts > 0):
        return Problem(
            st.REASON_OOM_KILLED,
            f"{pod.name}: the engine was killed for exceeding its memory limit (OOMKilled, exit code "
            f"{pod.exit_code}, {pod.restarts} restarts); raise spec.resources.memory or lower the KV cache",
            72,
            terminal=True,
        )
    if not (crashed or (pod.restarts > 0 and pod.terminated_message)):
        return None
    if pod.terminated_message:
        return Problem(st.REASON_ENGINE_FAILED, _clip(f"{pod.name}: {pod.terminated_message}"), 70, terminal=True)
    exited = f"exit code {pod.exit_code}" + (f", {pod.terminated_reason}" if pod.terminated_reason else "")
    detail = f"{exited}; " if pod.exit_code is not None else ""
    return Problem(
        st.REASON_CRASH_LOOPING, _clip(f"{pod.name}: {detail}{pod.waiting_message or 'back-off'}"), 65, terminal=True
    )


def _running(pod: PodSummary) -> Problem:
    """A running engine that is not Ready: loading until its probes first pass, unhealthy when it went unready.

    The pod's Ready=False is older than the engine's start while the engine never was Ready (the startup probe,
    then the first readiness check, are pending: the kubelet restarts it if they fail); a Ready=False newer than
    the start means the engine was Ready and its readiness probe now fails.
    """
    restarted = f" ({pod.restarts} restarts)" if pod.restarts else ""
    went_unready = (
        pod.started
        and pod.not_ready_since is not None
        and pod.running_since is not None
        and pod.not_ready_since > pod.running_since
    )
    if not went_unready:
        waiting = "its readiness probe" if pod.started else "/health"
        return Problem(st.REASON_MODEL_LOADING, f"{pod.name}: engine starting, waiting for {waiting}{restarted}", 10)
    return Problem(
        st.REASON_ENGINE_NOT_READY,
        f"{pod.name}: engine started but its readiness probe fails{restarted}",
        30,
        since=pod.not_ready_since,
    )


def pod_problem(pod: PodSummary) -> Problem | None:
    """What is wrong with one pod, if anything (None for ready or terminating pods)."""
    if pod.terminating or pod.ready:
        return None
    if pod.unschedulable_message is not None:
        return _unschedulable(pod, pod.unschedulable_message)
    if pod.waiting_reason in IMAGE_PULL_REASONS:
        terminal = pod.waiting_reason in TERMINAL_IMAGE_REASONS
        return Problem(st.REASON_IMAGE_PULL_FAILED, _clip(f"{pod.name}: {_said(pod)}"), 60, terminal, pod.start_since)
    if pod.waiting_reason in CONFIG_ERROR_REASONS:
        # The kubelet's own words: `secret "chat-keys" not found`, `couldn't find key api-key in Secret ns/x`.
        return Problem(
            st.REASON_CONTAINER_CONFIG_ERROR,
            _clip(f"{pod.name}: {pod.waiting_message or pod.waiting_reason}"),
            55,
            terminal=True,
        )
    crash = _crashed(pod)
    if crash is not None:
        return crash
    if pod.phase == "Running":
        return _running(pod)
    if pod.waiting_reason:
        return Problem(st.REASON_PENDING, _clip(f"{pod.name}: {pod.waiting_reason}"), 5)
    return Problem(st.REASON_PENDING, f"{pod.name}: pod pending", 5)


def worst_problem(pods: Iterable[PodSummary]) -> Problem | None:
    """The most severe problem among pods (ties: the first by pod name, for a stable message)."""
    problems = [p for p in (pod_problem(pod) for pod in sorted(pods, key=lambda x: x.name)) if p is not None]
    if not problems:
        return None
    return max(problems, key=lambda p: p.severity)


def missing_problem(missing: tuple[tuple[str, str], ...], since: datetime | None) -> Problem | None:
    """A Secret or claim the spec names is not there (reconcile.references): transient, from `since`."""
    if not missing:
        return None
    return Problem(missing[0][0], "; ".join(text for _, text in missing), 80, since=since)

"""Derives the Ready, Progressing and Degraded conditions from what runtime pods report (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dialogue_operator.api import status as st
from dialogue_operator.reconcile.observed import CONFIG_ERROR_REASONS, IMAGE_PULL_REASONS, PodSummary

GPU_SHORTAGE_MARKER = "Insufficient nvidia.com/gpu"
MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class Problem:
    """The most telling reason runtime pods are not serving, with the message a person needs."""

    reason: str
    message: str
    severity: int  # higher wins when pods disagree


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def pod_problem(pod: PodSummary) -> Problem | None:
    """What is wrong with one pod, if anything (None for ready or merely starting pods)."""
    if pod.terminating or pod.ready:
        return None
    if pod.unschedulable_message is not None:
        if GPU_SHORTAGE_MARKER in pod.unschedulable_message:
            return Problem(st.REASON_INSUFFICIENT_GPU, _clip(pod.unschedulable_message), 50)
        return Problem(st.REASON_UNSCHEDULABLE, _clip(pod.unschedulable_message), 40)
    if pod.waiting_reason in IMAGE_PULL_REASONS:
        return Problem(
            st.REASON_IMAGE_PULL_FAILED, _clip(f"{pod.name}: {pod.waiting_message or pod.waiting_reason}"), 60
        )
    if pod.waiting_reason in CONFIG_ERROR_REASONS:
        # The kubelet's own words: `secret "chat-keys" not found`, `couldn't find key api-key in Secret ns/x`.
        return Problem(
            st.REASON_CONTAINER_CONFIG_ERROR, _clip(f"{pod.name}: {pod.waiting_message or pod.waiting_reason}"), 55
        )
    crashed = pod.waiting_reason == "CrashLoopBackOff"
    if pod.terminated_reason == "OOMKilled" and (crashed or pod.restarts > 0):
        return Problem(
            st.REASON_OOM_KILLED,
            f"{pod.name}: the engine was killed for exceeding its memory limit (OOMKilled, exit code "
            f"{pod.exit_code}, {pod.restarts} restarts); raise spec.resources.memory or lower the KV cache",
            72,
        )
    if crashed or (pod.restarts > 0 and pod.terminated_message):
        if pod.terminated_message:
            return Problem(st.REASON_ENGINE_FAILED, _clip(f"{pod.name}: {pod.terminated_message}"), 70)
        exited = f"exit code {pod.exit_code}" + (f", {pod.terminated_reason}" if pod.terminated_reason else "")
        detail = f"{exited}; " if pod.exit_code is not None else ""
        return Problem(st.REASON_CRASH_LOOPING, _clip(f"{pod.name}: {detail}{pod.waiting_message or 'back-off'}"), 65)
    if pod.phase == "Running":
        return Problem(st.REASON_MODEL_LOADING, f"{pod.name}: engine starting, waiting for /health", 10)
    if pod.waiting_reason:
        return Problem(st.REASON_PENDING, _clip(f"{pod.name}: {pod.waiting_reason}"), 5)
    return Problem(st.REASON_PENDING, f"{pod.name}: pod pending", 5)


def worst_problem(pods: Iterable[PodSummary]) -> Problem | None:
    """The most severe problem among pods (ties: the first by pod name, for a stable message)."""
    problems = [p for p in (pod_problem(pod) for pod in sorted(pods, key=lambda x: x.name)) if p is not None]
    if not problems:
        return None
    return max(problems, key=lambda p: p.severity)


def is_failure(problem: Problem | None) -> bool:
    """Whether a problem is a failure (Degraded) rather than progress (loading, pending)."""
    return problem is not None and problem.severity >= 40

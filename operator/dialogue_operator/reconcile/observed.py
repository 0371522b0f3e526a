"""What the shell observed about a DialogueModel's children, reduced to what the core reads (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dialogue_runtime import contract

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# The kubelet cannot build the container from the spec: a Secret or ConfigMap (or a key in one) is missing.
CONFIG_ERROR_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
# Waiting reasons of a normal start: a later container's (or an init container's) own reason says more.
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})


def timestamp(value: Any) -> datetime | None:
    """An RFC 3339 time as the API server writes it (`2026-12-07T12:00:00Z`); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PodSummary:
    """One runtime pod, as much as status reasons need (kept small: the shell caches one per pod)."""

    name: str
    variant: str
    phase: str = "Pending"
    ready: bool = False
    started: bool = False
    terminating: bool = False
    unschedulable_message: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    terminated_message: str | None = None
    terminated_reason: str | None = None  # of the last termination: Error, OOMKilled, Completed, ...
    exit_code: int | None = None
    restarts: int = 0
    # When each transient problem began, from the pod's own timestamps (see conditions.GRACE_PERIOD):
    unschedulable_since: datetime | None = None  # PodScheduled=False lastTransitionTime (else creation)
    start_since: datetime | None = None  # status.startTime, the kubelet took the pod (else creation)
    not_ready_since: datetime | None = None  # Ready=False lastTransitionTime
    running_since: datetime | None = None  # the engine container's state.running.startedAt

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodSummary:
        """Summarise a Pod object (its scheduling condition and the engine container's state)."""
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        created = timestamp(meta.get("creationTimestamp"))
        conds = {str(c.get("type")): c for c in status.get("conditions") or []}
        scheduled = conds.get("PodScheduled") or {}
        unschedulable = None
        if scheduled.get("status") == "False":
            unschedulable = str(scheduled.get("message") or scheduled.get("reason") or "Unschedulable")
        ready_cond = conds.get("Ready") or {}
        ready = ready_cond.get("status") == "True"
        waiting_reason = waiting_message = terminated_message = terminated_reason = None
        exit_code: int | None = None
        started = False
        running_since: datetime | None = None
        restarts = 0
        init = status.get("initContainerStatuses") or []
        # Init containers first: one that cannot be created or keeps failing holds the pod at PodInitializing.
        for cs in [*init, *(status.get("containerStatuses") or [])]:
            state = cs.get("state") or {}
            restarts += int(cs.get("restartCount") or 0)
            if cs not in init:
                started = started or bool(cs.get("started"))
                running_since = running_since or timestamp((state.get("running") or {}).get("startedAt"))
            waiting = state.get("waiting")
            if isinstance(waiting, dict) and (waiting_reason is None or waiting_reason in STARTING_REASONS):
                waiting_reason = waiting.get("reason")
                waiting_message = waiting.get("message")
            last = (cs.get("lastState") or {}).get("terminated") or state.get("terminated") or {}
            if last and not (cs in init and last.get("exitCode") == 0):  # a finished init container is no news
                if last.get("message") and terminated_message is None:
                    terminated_message = str(last["message"]).strip()
                if terminated_reason is None:
                    terminated_reason = last.get("reason")
                    exit_code = last.get("exitCode")
        return cls(
            name=str(meta.get("name", "")),
            variant=str((meta.get("labels") or {}).get(contract.LABEL_VARIANT, "")),
            phase=str(status.get("phase") or "Pending"),
            ready=ready,
            started=started,
            terminating=meta.get("deletionTimestamp") is not None,
            unschedulable_message=unschedulable,
            waiting_reason=waiting_reason,
            waiting_message=waiting_message,
            terminated_message=terminated_message,
            terminated_reason=terminated_reason,
            exit_code=exit_code,
            restarts=restarts,
            unschedulable_since=timestamp(scheduled.get("lastTransitionTime")) or created,
            start_since=timestamp(status.get("startTime")) or created,
            not_ready_since=None if ready else timestamp(ready_cond.get("lastTransitionTime")),
            running_since=running_since,
        )


@dataclass(frozen=True)
class DeploymentSummary:
    """Replica counts of one variant's Deployment."""

    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    up_to_date: bool = False

    @classmethod
    def from_deployment(cls, dep: dict[str, Any]) -> DeploymentSummary:
        """Counts from a Deployment's status; `up_to_date` once the controller saw the latest spec."""
        meta = dep.get("metadata") or {}
        status = dep.get("status") or {}
        return cls(
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            up_to_date=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        )


ChildKey = tuple[str, str]  # (kind, name)


@dataclass(frozen=True)
class Observed:
    """The children that exist (full objects, keyed by kind and name) and the model's runtime pods."""

    children: dict[ChildKey, dict[str, Any]] = field(default_factory=dict)
    pods: tuple[PodSummary, ...] = ()
    # Secrets and claims the spec names that do not exist: (reason, message), see reconcile.references.
    missing: tuple[tuple[str, str], ...] = ()
    # The nodes' nvidia.com/gpu.product labels (sorted), why they could not be read, or None when not read.
    gpu_products: tuple[str, ...] | str | None = None

    def deployment(self, name: str) -> DeploymentSummary | None:
        """Replica counts of the Deployment `name`, if it exists."""
        dep = self.children.get(("Deployment", name))
        return DeploymentSummary.from_deployment(dep) if dep is not None else None

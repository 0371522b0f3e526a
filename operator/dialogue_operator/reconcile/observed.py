"""What the shell observed about a DialogueModel's children, reduced to what the core reads (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dialogue_runtime import contract

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
# The kubelet cannot build the container from the spec: a Secret or ConfigMap (or a key in one) is missing.
CONFIG_ERROR_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})


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

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodSummary:
        """Summarise a Pod object (its scheduling condition and the engine container's state)."""
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        unschedulable = None
        ready = False
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                unschedulable = str(cond.get("message") or cond.get("reason") or "Unschedulable")
            if cond.get("type") == "Ready":
                ready = cond.get("status") == "True"
        waiting_reason = waiting_message = terminated_message = terminated_reason = None
        exit_code: int | None = None
        started = False
        restarts = 0
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            restarts += int(cs.get("restartCount") or 0)
            started = started or bool(cs.get("started"))
            if "waiting" in state:
                waiting_reason = state["waiting"].get("reason")
                waiting_message = state["waiting"].get("message")
            last = (cs.get("lastState") or {}).get("terminated") or state.get("terminated") or {}
            if last.get("message"):
                terminated_message = str(last["message"]).strip()
            if last:
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

    def deployment(self, name: str) -> DeploymentSummary | None:
        """Replica counts of the Deployment `name`, if it exists."""
        dep = self.children.get(("Deployment", name))
        return DeploymentSummary.from_deployment(dep) if dep is not None else None

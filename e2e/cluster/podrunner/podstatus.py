"""The pod's phase and conditions from its containers' statuses, following the kubelet's rules (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MIN_GRACE_S = 2.0
OWNED_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def pod_phase(
    restart_policy: str,
    init_statuses: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
    init_failed: bool,
) -> str:
    """The kubelet's getPhase: Pending while initialising or a container never ran, Succeeded/Failed once every
    container stopped for good, Running otherwise."""
    if init_failed:
        return "Failed"
    if any(
        "terminated" not in (s.get("state") or {}) or s["state"]["terminated"].get("exitCode") != 0
        for s in init_statuses
    ):
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for status in statuses:
        state = status.get("state") or {}
        last = status.get("lastState") or {}
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode") == 0
        elif "terminated" in last:
            stopped += 1
            succeeded += last["terminated"].get("exitCode") == 0
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if restart_policy == "Always":
        return "Running"
    if stopped == succeeded:
        return "Succeeded"
    if restart_policy == "Never":
        return "Failed"
    return "Running"


def conditions(
    previous: Sequence[Mapping[str, Any]],
    *,
    sandbox_ready: bool,
    initialized: bool,
    containers_ready: bool,
    readiness_gates: Sequence[str],
    phase: str,
    now: str,
) -> list[dict[str, Any]]:
    """All pod conditions: the four the kubelet owns recomputed, others (PodScheduled, gates) kept as they are.

    A condition keeps its lastTransitionTime while its status does not change.
    """
    by_type = {c.get("type"): dict(c) for c in previous}
    gates_ok = all(by_type.get(g, {}).get("status") == "True" for g in readiness_gates)
    terminal = phase in ("Succeeded", "Failed")
    wanted: dict[str, tuple[bool, str]] = {
        "PodReadyToStartContainers": (sandbox_ready and not terminal, ""),
        "Initialized": (initialized, "" if initialized else "ContainersNotInitialized"),
        "ContainersReady": (containers_ready, "" if containers_ready else "ContainersNotReady"),
        "Ready": (containers_ready and gates_ok, ""),
    }
    if terminal:
        wanted["ContainersReady"] = (False, "PodCompleted")
        wanted["Ready"] = (False, "PodCompleted")
    elif not wanted["Ready"][0]:
        wanted["Ready"] = (False, "ContainersNotReady" if not containers_ready else "ReadinessGatesNotReady")
    result = [c for c in previous if c.get("type") not in OWNED_CONDITIONS]
    for kind in OWNED_CONDITIONS:
        ok, reason = wanted[kind]
        status = "True" if ok else "False"
        old = by_type.get(kind, {})
        condition: dict[str, Any] = {
            "type": kind,
            "status": status,
            "lastProbeTime": None,
            "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == status else now,
        }
        # None clears a reason left from before: the status patch merges each condition by type.
        condition["reason"] = reason or None
        result.append(condition)
    return result


def pod_status(
    pod: Mapping[str, Any],
    *,
    phase: str,
    init_statuses: Sequence[Mapping[str, Any]],
    statuses: Sequence[Mapping[str, Any]],
    sandbox_ready: bool,
    pod_ip: str,
    host_ip: str,
    start_time: str,
    now: str,
) -> dict[str, Any]:
    """The status the runner patches: phase, IPs, conditions and the container statuses (atomic lists)."""
    initialized = all((s.get("state") or {}).get("terminated", {}).get("exitCode") == 0 for s in init_statuses)
    gates = [str(g.get("conditionType")) for g in (pod.get("spec") or {}).get("readinessGates") or []]
    status: dict[str, Any] = {
        "phase": phase,
        "hostIP": host_ip,
        # podIPs/hostIPs merge by ip in a strategic patch: "$patch: replace" keeps exactly one (an IP that
        # changed across a runner restart would otherwise leave two, which the API server rejects).
        "hostIPs": [{"ip": host_ip}, {"$patch": "replace"}],
        "startTime": start_time,
        "conditions": conditions(
            (pod.get("status") or {}).get("conditions") or [],
            sandbox_ready=sandbox_ready,
            initialized=initialized,
            containers_ready=bool(statuses) and all(s.get("ready") for s in statuses),
            readiness_gates=gates,
            phase=phase,
            now=now,
        ),
        "containerStatuses": list(statuses),  # an atomic list: a patch replaces it whole
        "qosClass": (pod.get("status") or {}).get("qosClass") or "BestEffort",
    }
    if init_statuses:
        status["initContainerStatuses"] = list(init_statuses)
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}, {"$patch": "replace"}]
    return status


def grace_period_s(pod: Mapping[str, Any]) -> float:
    """Seconds between SIGTERM and SIGKILL: the deletion's grace period, else the spec's (default 30); at least
    2 s, the kubelet's minimum, so even a forced delete sends SIGTERM first."""
    meta = pod["metadata"]
    value = meta.get("deletionGracePeriodSeconds")
    if value is None:
        value = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return max(float(value) if value is not None else 30.0, MIN_GRACE_S)


def with_runner_ips(pod: Mapping[str, Any], pod_ip: str, host_ip: str) -> dict[str, Any]:
    """The pod as the downward API must see it: with the IPs the runner assigned."""
    status = dict(pod.get("status") or {})
    status.update({"podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "hostIP": host_ip, "hostIPs": [{"ip": host_ip}]})
    return {**pod, "status": status}

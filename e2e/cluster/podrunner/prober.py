"""Runs one pod's container probes (startup, liveness, readiness) on the runner's shared pool and applies their
results to each container's state, the way the kubelet's prober manager does (e2e layer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from e2e.cluster.podrunner.container import ContainerRun
from e2e.cluster.podrunner.probes import CheckTarget, ProbeConfigError, ProbeSpec, ProbeTracker, run_check

# (type, reason, message) -> records an Event on the pod
EventSink = Callable[[str, str, str], None]


class Prober:
    """Owns the in-flight checks of one pod; at most one check per container and probe kind at a time."""

    def __init__(self, pool: ThreadPoolExecutor, events: EventSink) -> None:
        self._pool = pool
        self._events = events
        self._futures: dict[tuple[str, str, int], Future[tuple[bool, str]]] = {}

    def reset(self, run: ContainerRun) -> None:
        """Fresh trackers for a container instance that just started."""
        run.probes = {}
        now = time.monotonic()
        for kind in ("startup", "liveness", "readiness"):
            probe = run.spec.get(f"{kind}Probe")
            if not probe or run.is_init:
                continue
            try:
                spec = ProbeSpec.parse(probe, run.spec.get("ports") or [])
            except ProbeConfigError as exc:
                self._events("Warning", "Unhealthy", f"{kind} probe of {run.name} cannot run: {exc}")
                continue
            run.probes[kind] = ProbeTracker(spec, now, initial=None)
        run.started = "startup" not in run.probes

    def step(self, run: ContainerRun, pod_ip: str, now: float) -> tuple[str, ProbeSpec] | None:
        """Collect finished checks and start due ones. Returns (probe kind, spec) when a startup or liveness probe
        just failed for good: the caller kills the container."""
        if run.process is None:
            return None
        if run.started and "readiness" not in run.probes:
            run.ready = True
        for kind in ["startup"] if not run.started else ["liveness", "readiness"]:
            tracker = run.probes.get(kind)
            if tracker is None:
                continue
            key = (run.name, kind, run.restart_count)
            future = self._futures.get(key)
            if future is not None and future.done():
                del self._futures[key]
                ok, message = future.result()
                changed = tracker.record(ok, time.monotonic())
                if not ok and tracker.failures in (1, tracker.spec.failure_threshold):
                    # the first failure of a streak and the one that crosses the threshold: enough to debug
                    self._events("Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {message}")
                if kind == "startup" and tracker.result is True:
                    run.started = True
                    run.ready = "readiness" not in run.probes
                elif kind == "readiness":
                    run.ready = tracker.result is True
                elif tracker.result is False and changed:
                    return kind, tracker.spec
            elif future is None and tracker.due(now):
                tracker.last_run_at = now
                target = CheckTarget(pod_ip, run.process.pid, run.mount_env, run.workdir)
                self._futures[key] = self._pool.submit(run_check, tracker.spec, target)
        return None

    def drop(self, run: ContainerRun) -> None:
        """Forget the checks of a container instance that stopped."""
        for key in [k for k in self._futures if k[0] == run.name]:
            self._futures.pop(key).cancel()

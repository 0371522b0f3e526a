"""Container lifecycle hooks the runner honours: `preStop` with `exec`, `httpGet`, `tcpSocket` or `sleep`, run
before SIGTERM and within the termination grace period, as the kubelet does (e2e layer)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from e2e.cluster.podrunner.probes import CheckTarget, ProbeConfigError, ProbeSpec, run_check

log = logging.getLogger("podrunner")


def pre_stop_spec(container: Mapping[str, Any], timeout_s: float) -> ProbeSpec | float | None:
    """The container's preStop hook as a check to run (timeout = the grace period), the seconds of a `sleep`
    hook, or None when there is none (or it cannot run)."""
    hook = ((container.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in hook:
        return float(hook["sleep"].get("seconds") or 0)
    if not hook:
        return None
    try:
        spec = ProbeSpec.parse(hook, container.get("ports") or [])
    except ProbeConfigError as exc:
        log.warning("preStop hook of %s cannot run: %s", container.get("name"), exc)
        return None
    return ProbeSpec(**{**vars(spec), "timeout_s": max(timeout_s, 0.1)})


def run_pre_stop_hooks(hooks: Sequence[tuple[ProbeSpec | float, CheckTarget]], grace_s: float) -> float:
    """Run the hooks in parallel, each bounded by the grace period; returns the seconds they took."""
    started = time.monotonic()

    def run(hook: ProbeSpec | float, target: CheckTarget) -> None:
        if isinstance(hook, float):
            time.sleep(min(hook, grace_s))
            return
        ok, message = run_check(hook, target)
        if not ok:
            log.info("preStop hook failed: %s", message)

    threads = [threading.Thread(target=run, args=(h, t), daemon=True) for h, t in hooks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(grace_s - (time.monotonic() - started), 0.0))
    return time.monotonic() - started

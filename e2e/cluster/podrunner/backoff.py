"""Crash-loop back-off between container restarts, as the kubelet computes it (pure)."""

from __future__ import annotations

from dataclasses import dataclass

INITIAL_BACKOFF_S = 10.0
MAX_BACKOFF_S = 300.0
# The kubelet forgets a container's back-off once it ran this long without crashing (2 x the cap).
RESET_AFTER_S = 600.0


@dataclass
class CrashBackoff:
    """Delay before the next restart, as the kubelet does it: the first exit restarts at once (the kubelet's
    back-off entry does not exist yet), then 10 s, doubling per consecutive crash, capped (300 s by default)."""

    initial_s: float = INITIAL_BACKOFF_S
    cap_s: float = MAX_BACKOFF_S
    reset_after_s: float = RESET_AFTER_S
    consecutive: int = 0

    def on_exit(self, ran_for_s: float) -> float:
        """Record one exit of a container that ran `ran_for_s` seconds; returns the delay before restarting."""
        if ran_for_s >= self.reset_after_s:
            self.consecutive = 0
        self.consecutive += 1
        return self.delay_s(self.consecutive)

    def delay_s(self, consecutive: int) -> float:
        if consecutive <= 1:
            return 0.0
        # min() before the power keeps huge restart counts from overflowing a float.
        return min(self.cap_s, self.initial_s * 2 ** min(consecutive - 2, 62))

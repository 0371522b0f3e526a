"""Scheduled replica bounds: recurring windows (cron start and end, a time zone) that override min/max (pure).

A window is open at time t when the latest `start` occurrence at or before t is later than the latest `end`
occurrence at or before t (KEDA's cron scaler reads start and end the same way): `0 8 * * 1-5` to `0 19 * * 1-5`
is open on weekdays from 08:00 to 19:00; `0 22 * * *` to `0 6 * * *` from 22:00 to 06:00. While one or more
windows are open, the bounds are the largest of their `minReplicas` and the largest of their `maxReplicas`
(`maxReplicas` of the spec where a window sets none); otherwise the spec's own. Occurrences are looked for up to
a year back, so yearly schedules work.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dialogue_operator.api.cron import Cron, time_zone


class ScheduleLike(Protocol):
    """The fields of one `spec.autoscaling.schedules` entry the autoscaler reads (api.ScheduledBounds has them)."""

    @property
    def name(self) -> str: ...
    @property
    def start(self) -> str: ...
    @property
    def end(self) -> str: ...
    @property
    def time_zone(self) -> str: ...
    @property
    def min_replicas(self) -> int: ...
    @property
    def max_replicas(self) -> int | None: ...


@dataclass(frozen=True)
class WindowState:
    """One window at a moment: open or not, and when that next changes (epoch seconds; None: not within a year)."""

    name: str
    open: bool
    next_change_s: float | None

    def to_status(self) -> dict[str, object]:
        """`status.autoscaling.schedules[]`: name, open, and `closesAt` or `opensAt` (RFC 3339, UTC)."""
        out: dict[str, object] = {"name": self.name, "open": self.open}
        if self.next_change_s is not None:
            at = dt.datetime.fromtimestamp(self.next_change_s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            out["closesAt" if self.open else "opensAt"] = at
        return out


def window_state(schedule: ScheduleLike, now_s: float) -> WindowState:
    """`schedule` at epoch second `now_s`: open when its latest start is later than its latest end; an open window
    closes at its next `end`, a closed one opens at its next `start`."""
    now = dt.datetime.fromtimestamp(now_s, time_zone(schedule.time_zone))
    start, end = Cron.parse(schedule.start), Cron.parse(schedule.end)
    started, ended = start.latest_at_or_before(now), end.latest_at_or_before(now)
    is_open = started is not None and (ended is None or started.timestamp() > ended.timestamp())
    nxt = (end if is_open else start).earliest_after(now)
    return WindowState(schedule.name, is_open, nxt.timestamp() if nxt is not None else None)


def window_open(schedule: ScheduleLike, now_s: float) -> bool:
    """Whether `schedule`'s window is open at epoch second `now_s`."""
    return window_state(schedule, now_s).open


@dataclass(frozen=True)
class Bounds:
    """The replica bounds in force now and every window's state (those open set the bounds; none: the spec's)."""

    min_replicas: int
    max_replicas: int
    windows: tuple[WindowState, ...] = ()

    @property
    def open_windows(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.windows if w.open)

    @property
    def source(self) -> str:
        """How status messages name where the bounds come from."""
        return f"schedule {', '.join(self.open_windows)}" if self.open_windows else "spec.autoscaling"


def scheduled_bounds(min_replicas: int, max_replicas: int, schedules: Sequence[ScheduleLike], now_s: float) -> Bounds:
    """The bounds at `now_s`: the spec's, or those of the windows open now (see the module's docstring)."""
    states = tuple(window_state(s, now_s) for s in schedules)
    open_now = [s for s, state in zip(schedules, states, strict=True) if state.open]
    if not open_now:
        return Bounds(min_replicas, max_replicas, states)
    low = max(s.min_replicas for s in open_now)
    high = max(s.max_replicas if s.max_replicas is not None else max_replicas for s in open_now)
    return Bounds(low, max(low, high), states)

"""Standard 5-field cron expressions and IANA time zones, as `spec.autoscaling.schedules` uses them (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_WEEKDAYS)}),
)
_LOOKBACK_DAYS = 366


def _value(text: str, name: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(f"{name} field: {text!r} is not a number")
    return int(text)


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{name} field: step {step_text!r} must be a whole number >= 1")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first, last = _value(a, name, names), _value(b, name, names)
        else:
            first = _value(body, name, names)
            last = high if step_text else first
        if not low <= first <= high or not low <= last <= high:
            raise ValueError(f"{name} field: {part!r} is outside {low}-{high}")
        if first > last:
            raise ValueError(f"{name} field: range {part!r} runs backwards")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A standard 5-field cron expression: minute, hour, day of month, month, day of week (0 or 7 = Sunday).

    Fields take `*`, numbers, ranges `a-b`, steps `*/n` or `a-b/n`, lists `a,b`, and month or weekday names
    (`jan`, `mon`). As in cron, when both day fields are restricted a day matching either one matches.
    """

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expr: str) -> Cron:
        """ValueError naming the field when `expr` is not a 5-field cron expression."""
        parts = expr.split()
        if len(parts) != 5:
            raise ValueError(f"{expr!r} has {len(parts)} fields; cron has 5 (minute hour day month weekday)")
        sets = [_parse_field(p, n, low, high, names) for p, (n, low, high, names) in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(d % 7 for d in sets[4])
        # As in Vixie cron, a day field starting with "*" (also "*/2") does not restrict on its own.
        return cls(sets[0], sets[1], sets[2], sets[3], weekdays, parts[2].startswith("*"), parts[4].startswith("*"))

    def day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def latest_at_or_before(self, when: dt.datetime) -> dt.datetime | None:
        """The latest minute matching this expression at or before `when` (its time zone), within a year."""
        return self._nearest(when, backwards=True)

    def earliest_after(self, when: dt.datetime) -> dt.datetime | None:
        """The earliest minute matching this expression strictly after `when`'s minute (its time zone), within a
        year."""
        return self._nearest(when, backwards=False)

    def _nearest(self, when: dt.datetime, *, backwards: bool) -> dt.datetime | None:
        step = -1 if backwards else 1
        now = (when.hour, when.minute)
        for offset in range(_LOOKBACK_DAYS + 1):
            day = when.date() + dt.timedelta(days=step * offset)
            if not self.day_matches(day):
                continue
            for hour in sorted(self.hours, reverse=backwards):
                for minute in sorted(self.minutes, reverse=backwards):
                    if offset == 0 and ((hour, minute) > now if backwards else (hour, minute) <= now):
                        continue
                    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=when.tzinfo)
        return None


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; ValueError when there is none by that name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"{name!r} is not an IANA time zone (like UTC or Europe/Berlin)") from exc

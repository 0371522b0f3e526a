"""Scheduled replica bounds: cron windows in a time zone replace min/max while open (pure, and through the shell)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from dialogue_operator.api.cron import Cron
from dialogue_operator.api.serving import AutoscalingSpec
from dialogue_operator.autoscale import Reason
from dialogue_operator.autoscale.schedule import scheduled_bounds, window_open
from dialogue_operator.k8s.autoscaler import AutoscalerShell
from dialogue_operator.reconcile import InvalidSpec, ModelObject
from pydantic import ValidationError

from tests.unit.autoscale.test_autoscale_shell import RecordingApi, fetch_with, model

UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")


def at(*args: int, tz: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)  # type: ignore[misc]


@dataclass(frozen=True)
class Window:
    name: str
    start: str
    end: str
    time_zone: str = "UTC"
    min_replicas: int = 2
    max_replicas: int | None = None


def test_cron_fields_lists_ranges_steps_and_names():
    c = Cron.parse("*/15 8-18 * jan-mar,dec mon-fri")
    assert c.minutes == {0, 15, 30, 45}
    assert c.hours == set(range(8, 19))
    assert c.months == {1, 2, 3, 12}
    assert c.weekdays == {1, 2, 3, 4, 5}
    assert Cron.parse("0 0 * * 7").weekdays == {0}  # 7 is Sunday too
    assert Cron.parse("5/20 * * * *").minutes == {5, 25, 45}


@pytest.mark.parametrize(
    ("expr", "says"),
    [
        ("0 8 * *", "has 4 fields"),
        ("60 8 * * *", "minute field: '60' is outside 0-59"),
        ("0 8-6 * * *", "hour field: range '8-6' runs backwards"),
        ("0 8 * * mon-xyz", "day of week field: 'xyz' is not a number"),
        ("*/0 8 * * *", "minute field: step '0' must be a whole number >= 1"),
        ("0 8 0 * *", "day of month field: '0' is outside 1-31"),
    ],
)
def test_bad_cron_expressions_name_the_field(expr: str, says: str):
    with pytest.raises(ValueError, match=None) as info:
        Cron.parse(expr)
    assert says in str(info.value)


def test_day_of_month_and_weekday_match_either_when_both_are_restricted():
    c = Cron.parse("0 0 1 * mon")  # the 1st of each month, and every Monday
    assert c.day_matches(dt.date(2026, 12, 1))  # a Tuesday, the 1st
    assert c.day_matches(dt.date(2026, 11, 30))  # a Monday
    assert not c.day_matches(dt.date(2026, 12, 2))
    assert Cron.parse("0 0 */2 * mon").day_matches(dt.date(2026, 11, 30)) is False  # "*/2" alone: both must match


def test_latest_occurrence_looks_back_over_days_and_weeks():
    weekday_8 = Cron.parse("0 8 * * 1-5")
    assert weekday_8.latest_at_or_before(at(2026, 11, 30, 9, 30)) == at(2026, 11, 30, 8, 0)  # Monday
    assert weekday_8.latest_at_or_before(at(2026, 11, 30, 7, 59)) == at(2026, 11, 27, 8, 0)  # back to Friday
    assert weekday_8.latest_at_or_before(at(2026, 11, 30, 8, 0)) == at(2026, 11, 30, 8, 0)  # at the minute itself
    assert Cron.parse("0 0 29 2 *").latest_at_or_before(at(2026, 11, 30)) is None  # no Feb 29 within a year


def test_business_hours_window_opens_and_closes_on_weekdays():
    w = Window("office", "0 8 * * 1-5", "0 19 * * 1-5")
    assert window_open(w, at(2026, 11, 30, 8, 0).timestamp())  # Monday 08:00
    assert window_open(w, at(2026, 11, 30, 18, 59).timestamp())
    assert not window_open(w, at(2026, 11, 30, 19, 0).timestamp())
    assert not window_open(w, at(2026, 11, 29, 12, 0).timestamp())  # Sunday
    assert not window_open(w, at(2026, 11, 30, 7, 59).timestamp())  # before Monday's start: Friday's end is later


def test_overnight_window_and_its_time_zone():
    night = Window("night", "0 22 * * *", "0 6 * * *", time_zone="Europe/Berlin")
    assert window_open(night, at(2026, 11, 30, 23, 30, tz=BERLIN).timestamp())
    assert window_open(night, at(2026, 12, 1, 5, 59, tz=BERLIN).timestamp())
    assert not window_open(night, at(2026, 12, 1, 6, 0, tz=BERLIN).timestamp())
    # 21:30 UTC is 22:30 in Berlin in winter: open; the same window read in UTC is not.
    assert window_open(night, at(2026, 11, 30, 21, 30).timestamp())
    assert not window_open(Window("night", "0 22 * * *", "0 6 * * *"), at(2026, 11, 30, 21, 30).timestamp())


def test_open_windows_replace_the_bounds_and_the_largest_wins():
    office = Window("office", "0 8 * * 1-5", "0 19 * * 1-5", min_replicas=2)
    launch = Window("launch", "0 12 30 11 *", "0 14 30 11 *", min_replicas=6, max_replicas=12)
    monday_9 = at(2026, 11, 30, 9, 0).timestamp()
    monday_13 = at(2026, 11, 30, 13, 0).timestamp()
    sunday = at(2026, 11, 29, 12, 0).timestamp()
    assert scheduled_bounds(0, 8, [office, launch], sunday).open_windows == ()
    b = scheduled_bounds(0, 8, [office, launch], monday_9)
    assert (b.min_replicas, b.max_replicas, b.source) == (2, 8, "schedule office")
    b = scheduled_bounds(0, 8, [office, launch], monday_13)
    assert (b.min_replicas, b.max_replicas, b.source) == (6, 12, "schedule office, launch")
    # A window may lower the floor too: zero at night although the spec keeps one replica.
    night = Window("night", "0 0 * * *", "0 6 * * *", min_replicas=0, max_replicas=2)
    b = scheduled_bounds(1, 8, [night], at(2026, 11, 30, 3, 0).timestamp())
    assert (b.min_replicas, b.max_replicas) == (0, 2)


def schedules_spec(*entries: dict) -> dict:
    return {"minReplicas": 0, "maxReplicas": 8, "schedules": list(entries)}


OFFICE = {"name": "office", "start": "0 8 * * 1-5", "end": "0 19 * * 1-5", "minReplicas": 2}


@pytest.mark.parametrize(
    ("entry", "field", "says"),
    [
        ({**OFFICE, "start": "0 25 * * *"}, "start", "hour field: '25' is outside 0-23"),
        ({**OFFICE, "end": "every day"}, "end", "String should match pattern"),
        ({**OFFICE, "timeZone": "Mars/Olympus"}, "timeZone", "'Mars/Olympus' is not an IANA time zone"),
        ({**OFFICE, "minReplicas": 4, "maxReplicas": 3}, "", "minReplicas must be less than or equal to its max"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(entry: dict, field: str, says: str):
    with pytest.raises(ValidationError) as info:
        AutoscalingSpec.model_validate(schedules_spec(entry))
    err = info.value.errors()[0]
    assert err["loc"][:2] == ("schedules", 0) and (not field or err["loc"][2] == field)
    assert says in err["msg"]
    with pytest.raises(ValidationError, match="schedules names must be unique"):
        AutoscalingSpec.model_validate(schedules_spec(OFFICE, OFFICE))


def test_a_stale_decision_is_clamped_to_the_widest_bounds_any_window_allows():
    spec = AutoscalingSpec.model_validate(schedules_spec({**OFFICE, "maxReplicas": 20}))
    assert spec.replica_range() == (0, 20)


async def test_an_open_window_raises_an_idle_model_from_zero_and_says_which():
    api = RecordingApi([])
    shell = AutoscalerShell(api=api, fetch=fetch_with(0.0))
    status = {"autoscaling": {"desiredReplicas": 0, "lastScaleTime": "2026-01-01T00:00:00Z"}}
    auto = schedules_spec(OFFICE)
    sunday = await shell.tick(model(auto, status), now_s=at(2026, 11, 29, 12, 0).timestamp())
    assert sunday is not None and sunday.desired_replicas == 0
    monday = await shell.tick(model(auto, status), now_s=at(2026, 11, 30, 8, 0, 10).timestamp())
    assert monday is not None
    assert (monday.desired_replicas, monday.reason) == (2, Reason.AT_MIN_REPLICAS)
    assert "raising to minReplicas 2 (schedule office)" in monday.message
    assert api.events[-1] == (Reason.AT_MIN_REPLICAS, monday.message)


def test_a_window_the_api_server_lets_through_but_cron_cannot_read_is_an_invalid_spec_naming_the_field():
    bad = {**OFFICE, "start": "0 25 * * 1-5"}  # cron-shaped, so the CRD's pattern accepts it
    body = {"metadata": {"name": "chat", "namespace": "ns"}, "spec": {"model": {"source": "hf://org/m"}}}
    body["spec"]["autoscaling"] = schedules_spec(bad)
    with pytest.raises(InvalidSpec) as info:
        ModelObject.from_body(body)
    assert "spec.autoscaling.schedules.0.start" in str(info.value)
    assert "hour field: '25' is outside 0-23" in str(info.value)


def test_next_occurrence_is_strictly_later_and_crosses_weekends():
    weekday_8 = Cron.parse("0 8 * * 1-5")
    assert weekday_8.earliest_after(at(2026, 11, 27, 9, 0)) == at(2026, 11, 30, 8, 0)  # Friday -> Monday
    assert weekday_8.earliest_after(at(2026, 11, 30, 7, 59)) == at(2026, 11, 30, 8, 0)
    assert weekday_8.earliest_after(at(2026, 11, 30, 8, 0)) == at(2026, 12, 1, 8, 0)  # not the minute itself
    assert Cron.parse("0 0 31 2 *").earliest_after(at(2026, 11, 30)) is None


def test_each_window_says_whether_it_is_open_and_when_that_changes():
    office = Window("office", "0 8 * * 1-5", "0 19 * * 1-5", time_zone="Europe/Berlin")
    monday_9 = scheduled_bounds(0, 8, [office], at(2026, 11, 30, 9, 0, tz=BERLIN).timestamp())
    assert [w.to_status() for w in monday_9.windows] == [
        {"name": "office", "open": True, "closesAt": "2026-11-30T18:00:00Z"}  # 19:00 in Berlin
    ]
    sunday = scheduled_bounds(0, 8, [office], at(2026, 11, 29, 12, 0, tz=BERLIN).timestamp())
    assert [w.to_status() for w in sunday.windows] == [
        {"name": "office", "open": False, "opensAt": "2026-11-30T07:00:00Z"}
    ]
    never_closes = Window("launch", "* * * * *", "0 0 31 2 *")
    assert scheduled_bounds(0, 8, [never_closes], 0.0).windows[0].to_status() == {"name": "launch", "open": True}


async def test_status_lists_the_windows_and_drops_them_with_the_spec():
    api = RecordingApi([])
    shell = AutoscalerShell(api=api, fetch=fetch_with(0.0))
    status = {"autoscaling": {"desiredReplicas": 0, "lastScaleTime": "2026-01-01T00:00:00Z"}}
    await shell.tick(model(schedules_spec(OFFICE), status), now_s=at(2026, 11, 29, 12, 0).timestamp())
    written = api.status_writes[-1]
    assert written["schedules"] == [{"name": "office", "open": False, "opensAt": "2026-11-30T08:00:00Z"}]
    await shell.tick(model(schedules_spec(), {"autoscaling": written}), now_s=at(2026, 11, 29, 12, 0, 10).timestamp())
    assert api.status_writes[-1]["schedules"] is None  # merge patch: the list goes away

"""Schedule triggers: validation at ``create_workflow`` and the times they fire (no clock:
every time here is given)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from automate.schedules.spec import ScheduleSpec, parse_schedule
from automate.services import WorkflowService
from automate_core.providers.errors import AutomateError, ErrorCodes


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_every__ticks_are_multiples_of_the_period_since_the_epoch():
    spec = ScheduleSpec(every=30)
    assert spec.next_after(utc(2026, 5, 1, 12, 0, 10)) == utc(2026, 5, 1, 12, 0, 30)
    assert spec.next_after(utc(2026, 5, 1, 12, 0, 30)) == utc(
        2026, 5, 1, 12, 1, 0
    )  # strictly after
    assert ScheduleSpec(every=3600).next_after(utc(2026, 5, 1, 12, 0, 0, 1)) == utc(2026, 5, 1, 13)


def test_every__ticks_between_are_inclusive_and_keep_the_latest():
    spec = ScheduleSpec(every=60)
    start, end = utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 3)
    assert spec.ticks_between(start, end, 10) == [start + timedelta(minutes=m) for m in range(4)]
    assert spec.ticks_between(start, end, 2) == [utc(2026, 5, 1, 12, 2), utc(2026, 5, 1, 12, 3)]
    assert spec.ticks_between(start + timedelta(seconds=1), end - timedelta(seconds=1), 10) == [
        utc(2026, 5, 1, 12, 1),
        utc(2026, 5, 1, 12, 2),
    ]
    assert spec.ticks_between(end, start, 10) == []
    # A year idle costs `limit` steps.
    assert len(ScheduleSpec(every=1).ticks_between(start - timedelta(days=365), end, 5)) == 5


def test_cron__weekdays_at_nine_in_paris_follow_daylight_saving():
    spec = ScheduleSpec(cron="0 9 * * 1-5", timezone="Europe/Paris")
    # Winter (UTC+1): Monday 5 January 2026, 09:00 Paris is 08:00 UTC.
    assert spec.next_after(utc(2026, 1, 5, 7)) == utc(2026, 1, 5, 8)
    # Friday 27 March after nine -> Monday 30 March, after the clocks went forward (UTC+2).
    assert spec.next_after(utc(2026, 3, 27, 12)) == utc(2026, 3, 30, 7)
    assert spec.local(utc(2026, 3, 30, 7)).isoformat() == "2026-03-30T09:00:00+02:00"


def test_cron__ticks_between_include_an_exact_end():
    spec = ScheduleSpec(cron="0 9 * * *", timezone="Europe/Paris")
    end = utc(2026, 1, 7, 8)  # 09:00 Paris, exactly
    assert spec.ticks_between(utc(2026, 1, 5, 8), end, 10) == [
        utc(2026, 1, 5, 8),
        utc(2026, 1, 6, 8),
        utc(2026, 1, 7, 8),
    ]
    assert spec.ticks_between(utc(2026, 1, 1), end, 1) == [end]


def test_cron__daylight_saving_gap_and_repeat():
    spec = ScheduleSpec(cron="30 2 * * *", timezone="Europe/Paris")
    # 29 March 2026: 02:30 does not exist in Paris; the tick is the first time after the gap.
    assert spec.local(spec.next_after(utc(2026, 3, 28, 12))).isoformat() == (
        "2026-03-29T03:00:00+02:00"
    )
    # 25 October 2026: 02:30 happens twice (00:30 and 01:30 UTC); a fixed time fires at
    # the first only, so the daily job runs once that day.
    first = spec.next_after(utc(2026, 10, 24, 12))
    assert first == utc(2026, 10, 25, 0, 30)
    assert spec.next_after(first) == utc(2026, 10, 26, 1, 30)
    assert spec.ticks_between(utc(2026, 10, 24, 12), utc(2026, 10, 26, 12), 10) == [
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
    ]


@pytest.mark.parametrize("cron", ["30 * * * *", "*/30 2 * * *", "30 */1 * * *"])
def test_cron__wildcard_minute_or_hour_fires_at_both_repeated_wall_times(cron):
    spec = ScheduleSpec(cron=cron, timezone="Europe/Paris")
    # It keeps its rhythm in real time: 02:30 CEST and 02:30 CET, an hour apart.
    ticks = spec.ticks_between(utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 1, 45), 10)
    assert utc(2026, 10, 25, 0, 30) in ticks
    assert utc(2026, 10, 25, 1, 30) in ticks
    assert spec.next_after(utc(2026, 10, 25, 0, 30)) == min(
        t for t in ticks if t > utc(2026, 10, 25, 0, 30)
    )


def test_cron__repeated_hour_in_a_range_fires_once_per_wall_time():
    # Fixed minutes and hours (a list and a range, no leading "*"): 01:00 CEST, 02:00 and
    # 02:30 CEST, 03:00 CET; the repeated 02:00 and 02:30 CET are skipped.
    spec = ScheduleSpec(cron="0,30 1-3 * * *", timezone="Europe/Paris")
    ticks = spec.ticks_between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 3), 20)
    assert [spec.local(t).isoformat() for t in ticks] == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T03:30:00+01:00",
    ]
    # The limit counts ticks that fire, not the skipped ones.
    assert spec.ticks_between(utc(2026, 10, 24, 22), utc(2026, 10, 25, 1, 50), 1) == [
        utc(2026, 10, 25, 0, 30)
    ]


def test_cron__expression_is_normalised():
    assert parse_schedule({"schedule": " 0  9 * *   1-5 "}).cron == "0 9 * * 1-5"


def test_parse__defaults():
    assert parse_schedule({"schedule": "*/5 * * * *"}) == ScheduleSpec(
        cron="*/5 * * * *", timezone="UTC", catch_up="latest"
    )
    assert parse_schedule({"every": 1, "catch_up": "all"}) == ScheduleSpec(every=1, catch_up="all")
    assert ScheduleSpec(every=30).as_trigger() == {"every": 30, "catch_up": "latest"}


@pytest.mark.parametrize(
    ("trigger", "field", "message"),
    [
        ({"schedule": "0 9 * * 1-5 2026"}, "trigger.schedule", "must be a 5-field cron"),
        ({"schedule": "@hourly"}, "trigger.schedule", "must be a 5-field cron"),
        ({"schedule": "61 * * * *"}, "trigger.schedule", "is not a valid cron expression"),
        ({"schedule": "0 9 * * mon-xyz"}, "trigger.schedule", "is not a valid cron expression"),
        ({"schedule": 9}, "trigger.schedule", "must be a 5-field cron"),
        ({"schedule": "0 0 30 2 *"}, "trigger.schedule", "never fires"),
        ({"schedule": "0 9 * * *", "timezone": "Mars/Olympus"}, "trigger.timezone", "not a known"),
        (
            {"schedule": "0 9 * * *", "timezone": "../../etc/passwd"},
            "trigger.timezone",
            "not a known",
        ),
        ({"schedule": "0 9 * * *", "timezone": ""}, "trigger.timezone", "IANA"),
        ({"every": 0}, "trigger.every", "whole number of seconds >= 1"),
        ({"every": -5}, "trigger.every", "whole number of seconds >= 1"),
        ({"every": 1.5}, "trigger.every", "whole number of seconds >= 1"),
        ({"every": True}, "trigger.every", "whole number of seconds >= 1"),
        ({"every": "30"}, "trigger.every", "whole number of seconds >= 1"),
        ({"every": 30, "timezone": "UTC"}, "trigger", "unknown key(s) timezone"),
        ({"every": 30, "schedule": "* * * * *"}, "trigger", "not both"),
        ({"schedule": "* * * * *", "events": ["x"]}, "trigger", "unknown key(s) events"),
        ({"every": 30, "catch_up": "some"}, "trigger.catch_up", "one of latest, none, all"),
    ],
)
@pytest.mark.django_db
def test_create_workflow__refuses_a_bad_schedule(trigger, field, message):
    with pytest.raises(AutomateError) as exc:
        WorkflowService().create_workflow(
            name="Sync",
            trigger=trigger,
            steps=[{"name": "Go", "type": "filter", "config": {"condition": "{{ true }}"}}],
        )
    assert exc.value.code == ErrorCodes.INVALID_ARGUMENT
    assert exc.value.details["field"] == field
    assert message in exc.value.message
    from automate.models import Workflow

    assert not Workflow.objects.exists()

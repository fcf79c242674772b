"""A schedule trigger, validated, and the times it fires (its ticks).

Two forms::

    {"schedule": "0 9 * * 1-5", "timezone": "Europe/Paris", "catch_up": "latest"}
    {"every": 30}

``schedule`` is a 5-field cron expression read by croniter (a kept library: cron has
enough corner cases, day-of-month OR day-of-week, ranges, steps, names, that we do not
write our own), in ``timezone`` (an IANA name, default UTC). ``every`` is a whole number
of seconds, at least 1; its ticks fall on multiples of it since the Unix epoch, so every
process computes the same ticks (``every: 3600`` fires on the hour, UTC).

When the clocks go back, a wall time happens twice. As in Vixie cron, an expression with a
fixed minute and hour (``30 2 * * *``) fires at its first occurrence only: a daily job runs
once a day. One with ``*`` leading its minute or hour field (``*/15 * * * *``,
``0 * * * *``) keeps its rhythm in real time and fires at both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from automate_core.providers.errors import invalid_argument

__all__ = ["CATCH_UP_MODES", "ScheduleSpec", "is_schedule_trigger", "parse_schedule"]

CATCH_UP_MODES = ("latest", "none", "all")
SCHEDULE_KEYS = frozenset({"schedule", "timezone", "catch_up"})
EVERY_KEYS = frozenset({"every", "catch_up"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def is_schedule_trigger(trigger: Mapping[str, Any]) -> bool:
    return "schedule" in trigger or "every" in trigger


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated schedule. Times in and out are aware datetimes; ticks come out in UTC."""

    cron: str = ""
    every: int | None = None
    timezone: str = "UTC"
    catch_up: str = "latest"

    def as_trigger(self) -> dict[str, Any]:
        """The trigger as a user writes it (the API shows it, the tick's payload has it)."""
        if self.every is not None:
            return {"every": self.every, "catch_up": self.catch_up}
        return {"schedule": self.cron, "timezone": self.timezone, "catch_up": self.catch_up}

    def describe(self) -> str:
        if self.every is not None:
            return f"every {self.every} s"
        return f"{self.cron} ({self.timezone})"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, moment: datetime) -> datetime:
        """``moment`` in the schedule's time zone (how ``scheduled_for`` is shown)."""
        return moment.astimezone(self.zone)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        if self.every is not None:
            step = timedelta(seconds=self.every)
            return EPOCH + ((moment - EPOCH) // step + 1) * step
        cron = self._cron(moment)
        while True:
            tick = cron.get_next(datetime).astimezone(UTC)
            if not self._repeated(tick):
                return tick

    def ticks_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The latest ``limit`` ticks ``t`` with ``start <= t <= end``, oldest first.

        Computed backwards from ``end``, so a schedule idle for a year costs ``limit``
        steps, not one per missed tick.
        """
        if limit < 1 or end < start:
            return []
        if self.every is not None:
            step = timedelta(seconds=self.every)
            last = (end - EPOCH) // step
            first = max(-((EPOCH - start) // step), last - limit + 1)  # ceil((start-EPOCH)/step)
            return [EPOCH + k * step for k in range(first, last + 1)]
        ticks: list[datetime] = []
        # croniter's get_prev is strictly before its start: start a microsecond after end.
        cron = self._cron(end + MICROSECOND)
        while len(ticks) < limit:
            tick = cron.get_prev(datetime).astimezone(UTC)
            if tick < start:
                break
            if not self._repeated(tick):
                ticks.append(tick)
        return ticks[::-1]

    @property
    def _fixed_time(self) -> bool:
        """Whether the expression names its minutes and hours (no leading ``*``)."""
        minute, hour = self.cron.split()[:2]
        return not (minute.startswith("*") or hour.startswith("*"))

    def _repeated(self, tick: datetime) -> bool:
        """Whether ``tick`` is a fixed-time expression's second go at a wall time the clocks
        going back made happen twice (``fold=1``: the later of the two instants)."""
        return self._fixed_time and self.local(tick).fold == 1

    def _cron(self, moment: datetime) -> Any:
        from croniter import croniter  # imported on use: only cron schedules need it

        return croniter(self.cron, moment.astimezone(self.zone))


def parse_schedule(trigger: Mapping[str, Any]) -> ScheduleSpec:
    """Validate a schedule trigger; a mistake is INVALID_ARGUMENT naming the field."""
    if "schedule" in trigger and "every" in trigger:
        raise invalid_argument("trigger", 'trigger: give "schedule" or "every", not both')
    allowed = EVERY_KEYS if "every" in trigger else SCHEDULE_KEYS
    unknown = set(trigger) - allowed
    if unknown:
        raise invalid_argument(
            "trigger",
            f"trigger: unknown key(s) {', '.join(sorted(unknown))} for a "
            f"{'every' if 'every' in trigger else 'schedule'} trigger "
            f"(allowed: {', '.join(sorted(allowed))})",
        )
    catch_up = trigger.get("catch_up", "latest")
    if catch_up not in CATCH_UP_MODES:
        raise invalid_argument(
            "trigger.catch_up",
            f"trigger.catch_up must be one of {', '.join(CATCH_UP_MODES)}, not {catch_up!r}",
        )
    if "every" in trigger:
        every = trigger["every"]
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise invalid_argument(
                "trigger.every",
                f"trigger.every must be a whole number of seconds >= 1, not {every!r}",
            )
        return ScheduleSpec(every=every, catch_up=catch_up)
    spec = ScheduleSpec(
        cron=_cron_expression(trigger["schedule"]),
        timezone=_timezone(trigger.get("timezone", "UTC")),
        catch_up=catch_up,
    )
    try:
        spec.next_after(datetime.now(UTC))
    except ValueError:  # croniter's CroniterBadDateError: a date that never comes (Feb 30)
        raise invalid_argument(
            "trigger.schedule", f"trigger.schedule {spec.cron!r} never fires"
        ) from None
    return spec


def _cron_expression(value: Any) -> str:
    from croniter import croniter

    if not isinstance(value, str) or len(value.split()) != 5:
        raise invalid_argument(
            "trigger.schedule",
            f"trigger.schedule must be a 5-field cron expression such as '0 9 * * 1-5' "
            f"(minute hour day-of-month month day-of-week), not {value!r}",
        )
    expression = " ".join(value.split())
    if not croniter.is_valid(expression):
        raise invalid_argument(
            "trigger.schedule", f"trigger.schedule {expression!r} is not a valid cron expression"
        )
    return expression


def _timezone(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise invalid_argument(
            "trigger.timezone", "trigger.timezone must be an IANA time zone name"
        )
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid_argument(
            "trigger.timezone",
            f"trigger.timezone {value!r} is not a known time zone (e.g. 'Europe/Paris', 'UTC')",
        ) from None
    return value

"""Fire due ticks (every worker and dispatcher poll), and keep schedule rows in step with
their workflows (:mod:`automate.services`).

A tick is fired in one transaction: its :class:`ScheduleTick` row (unique on workflow and
tick), its outbox item (``external_id`` made of the workflow and the tick, unique too) and
its run; the schedule's ``next_tick_at`` moves on in the same transaction. A process
killed mid-tick leaves nothing, and the tick is fired by the next poll; two processes
that see the same tick due write one row between them, the other's INSERT fails.

Lock order: a tick being fired locks its schedule row, then its rows' foreign keys take a
KEY SHARE lock on the workflow row. A workflow's save locks the workflow row, then its
receiver (:func:`follow_enabled`) updates the schedule row; so the workflow's lock must be
one KEY SHARE does not wait for: ``WorkflowService`` takes FOR NO KEY UPDATE (and a bare
``save()``'s UPDATE, which changes no key, takes that too). A FOR UPDATE there would make
the two transactions wait for each other.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Min
from django.utils import timezone

from automate import runs
from automate.conf import settings as app_settings
from automate.models import SCHEDULE_CONNECTOR_KEY, Workflow
from automate.schedules.models import Schedule, ScheduleTick
from automate.schedules.spec import ScheduleSpec
from automate_core.outbox import queue
from automate_core.tracing import new_trace_id

__all__ = [
    "SCHEDULE_CONNECTOR_KEY",
    "SCHEDULE_EVENT_TYPE",
    "fire_due",
    "fire_due_when_due",
    "follow_enabled",
    "forget_next_due",
    "look_next_poll",
    "set_schedule",
]

logger = logging.getLogger("automate.schedules")

#: The event type of ticks' outbox items. Their connector key, SCHEDULE_CONNECTOR_KEY, is
#: not a connection key (it starts with "_"), so no trigger matches it; each tick's run is
#: made with its item.
SCHEDULE_EVENT_TYPE = "schedule"
#: How long a schedule whose ticks cannot be computed waits before it is tried again.
RETRY_BROKEN = timedelta(seconds=60)
#: Schedules handled by one poll; the rest are due still and come with the next one.
SCHEDULES_PER_POLL = 100
#: How long a process trusts what it knows of the next due tick: a schedule saved by
#: another process (whose saves this one cannot hear) is seen within this time.
RECHECK_SECONDS = 1.0

#: When this process next looks at the schedules (per time.monotonic()); see
#: :func:`fire_due_when_due`.
_next_look = 0.0


def fire_due_when_due() -> int:
    """:func:`fire_due`, unless this process knows that no tick can be due yet: what a
    worker's or dispatcher's every poll calls.

    After a look, the earliest ``next_tick_at`` tells when to look again (at most
    :data:`RECHECK_SECONDS` later), so most polls cost no query. Saving or deleting a
    schedule in this process makes the next poll look (:func:`forget_next_due`).
    """
    global _next_look
    if time.monotonic() < _next_look:
        return 0
    now = timezone.now()
    fired = fire_due(now)
    soonest = Schedule.objects.filter(next_tick_at__isnull=False).aggregate(at=Min("next_tick_at"))
    wait = RECHECK_SECONDS
    if soonest["at"] is not None:
        wait = min(wait, (soonest["at"] - timezone.now()).total_seconds())
    _next_look = time.monotonic() + wait
    return fired


def forget_next_due(**kwargs: Any) -> None:
    """Make the next poll look at the schedules (a receiver of schedule saves and deletes):
    now, and again when the saving transaction commits."""
    look_next_poll()
    transaction.on_commit(look_next_poll)


def look_next_poll() -> None:
    """Make this process's next poll look at the schedules."""
    global _next_look
    _next_look = 0.0


def fire_due(now: datetime | None = None) -> int:
    """Fire the ticks due at ``now`` (default: the current time); return how many runs
    started. When nothing is due this is one query on an index."""
    now = now or timezone.now()
    due = Schedule.objects.filter(next_tick_at__lte=now).order_by("next_tick_at")
    fired = 0
    for pk in list(due.values_list("pk", flat=True)[:SCHEDULES_PER_POLL]):
        try:
            fired += _fire_schedule(pk, now)
        except DatabaseError:
            raise  # the worker's loop waits for the database and polls again
        except Exception:
            # A schedule we cannot compute (its time zone vanished from the system, cron
            # support not installed) must not stop the poll, nor be retried every second.
            logger.exception("schedule %s could not fire; trying again in a minute", pk)
            Schedule.objects.filter(pk=pk).update(next_tick_at=now + RETRY_BROKEN)
    return fired


def ticks_to_fire(spec: ScheduleSpec, due_since: datetime, now: datetime) -> list[datetime]:
    """The ticks in ``[due_since, now]`` to fire, oldest first, after ``spec.catch_up``.

    A tick more than ``SCHEDULE_MISFIRE_GRACE_SECONDS`` late is *missed*; the others are
    on time and always fire. Of the missed ones, ``latest`` fires the latest one when no
    tick is on time, ``none`` fires none, ``all`` fires them all; never more than
    ``SCHEDULE_MAX_CATCH_UP`` ticks (the latest ones).
    """
    due = spec.ticks_between(due_since, now, app_settings.SCHEDULE_MAX_CATCH_UP)
    if not due or spec.catch_up == "all":
        return due
    grace = timedelta(seconds=app_settings.SCHEDULE_MISFIRE_GRACE_SECONDS)
    on_time = [tick for tick in due if now - tick <= grace]
    if spec.catch_up == "none":
        return on_time
    return on_time or due[-1:]


def set_schedule(workflow: Workflow, spec: ScheduleSpec | None) -> None:
    """Give ``workflow`` the schedule ``spec`` (None removes it), due from its next tick
    if the workflow is enabled; the same spec again keeps its row and its next tick. For a
    new trigger; in the caller's transaction, after the workflow's save (whose receiver,
    :func:`follow_enabled`, has made the schedule follow ``enabled``)."""
    if spec is None:
        Schedule.objects.filter(workflow=workflow).delete()
        return
    schedule = Schedule.objects.filter(workflow=workflow).first()
    if schedule is not None and schedule.spec() == spec:
        return
    Schedule.objects.update_or_create(
        workflow=workflow,
        defaults={
            "cron": spec.cron,
            "every_seconds": spec.every,
            "timezone": spec.timezone,
            "catch_up": spec.catch_up,
            "next_tick_at": spec.next_after(timezone.now()) if workflow.enabled else None,
        },
    )


def follow_enabled(
    sender: Any, instance: Workflow, created: bool = False, raw: bool = False, **kwargs: Any
) -> None:
    """A receiver of workflow saves: the schedule is due only while its workflow is
    enabled, however the workflow was saved (``WorkflowService`` or a bare ``save()``);
    the only code that makes it follow.

    Enabled again: due from now on, no catch-up. Disabled: not due (a poll would find that
    out too, but would wake for it). One query when nothing changes; none for a new
    workflow (no schedule points at it yet) nor for ``loaddata``.
    """
    if created or raw:
        return
    schedules = Schedule.objects.filter(workflow=instance)
    if not instance.enabled:
        schedules.filter(next_tick_at__isnull=False).update(next_tick_at=None)
        return
    stopped = schedules.filter(next_tick_at__isnull=True).first()
    if stopped is None:
        return
    now = timezone.now()
    try:
        stopped.next_tick_at = stopped.spec().next_after(now)
    except Exception:
        # The workflow's save must not fail for its schedule (a time zone gone from the
        # system): the poll tries it in a minute and logs it as fire_due does.
        logger.exception("schedule %s has no next tick; trying again in a minute", stopped.pk)
        stopped.next_tick_at = now + RETRY_BROKEN
    stopped.save(update_fields=["next_tick_at", "updated_at"])


def _fire_schedule(pk: int, now: datetime) -> int:
    with transaction.atomic():
        rows = Schedule.objects.filter(pk=pk, next_tick_at__lte=now).select_related("workflow")
        if connection.features.has_select_for_update_skip_locked:
            # Another process firing this schedule holds the row: leave it to that one.
            rows = rows.select_for_update(skip_locked=True, of=("self",))
        schedule = rows.first()
        if schedule is None or schedule.next_tick_at is None:
            return 0
        spec, workflow = schedule.spec(), schedule.workflow
        fired = 0
        if workflow.enabled:
            ticks = ticks_to_fire(spec, schedule.next_tick_at, now)
            fired = sum(_fire_tick(workflow, spec, tick) for tick in ticks)
            if ticks:
                schedule.last_tick_at = ticks[-1]
            schedule.next_tick_at = spec.next_after(now)
        else:
            schedule.next_tick_at = None
        schedule.save(update_fields=["next_tick_at", "last_tick_at", "updated_at"])
    if fired:
        logger.info("schedule of workflow %s: %d run(s) started", workflow.key, fired)
    return fired


def _fire_tick(workflow: Workflow, spec: ScheduleSpec, tick: datetime) -> int:
    """One tick's row, outbox item and run; 0 when another process fired it first."""
    try:
        with transaction.atomic():
            record = ScheduleTick.objects.create(workflow=workflow, scheduled_for=tick)
    except IntegrityError:
        return 0
    result = queue.enqueue(
        SCHEDULE_CONNECTOR_KEY,
        event_type=SCHEDULE_EVENT_TYPE,
        payload={"scheduled_for": spec.local(tick).isoformat(), "trigger": spec.as_trigger()},
        external_id=f"{workflow.pk}:{tick.isoformat()}",
        trace_id=new_trace_id(),
    )
    if not result.created:
        return 0
    run = runs.new_run(workflow, result.item)
    run.save(force_insert=True)
    record.outbox_item = result.item
    record.save(update_fields=["outbox_item"])
    return 1

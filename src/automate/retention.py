"""Delete settled rows once they are older than ``AUTOMATE["RETENTION"]`` says.

Nothing else deletes them: done outbox items, finished runs, delivered webhooks and
fired ticks pile up forever otherwise, and a large settled outbox slows the claim.
:func:`prune` is the whole mechanism; ``manage.py automate_prune`` calls it, and so can
a Celery beat entry or a schedule of your own.

What may go, kind by kind (``None`` in ``RETENTION`` keeps a kind forever):

* ``done`` / ``dead``: outbox items done (by ``completed_at``) or dead-lettered (by
  ``available_at``, the due time of their last attempt) before the cutoff. Never an item
  a run that is not finished still points at (the event it was made for, the event that
  resumed it, the timer or the event of one of its waits): that run needs it to go on, or
  to be swept when its item dies. Finished runs, waits and schedule ticks lose their link
  to a deleted item (their columns are set to NULL, as ``on_delete`` says).
* ``runs``: finished runs (completed, filtered, cancelled; dead ones only once ``dead``
  allows too) with their step records and waits, unless a parent or child run is still
  unfinished, or a parent still waits on them.
* ``receipts``: :class:`~automate.replays.WebhookReceipt` rows past
  ``WEBHOOK_REPLAY_WINDOW_SECONDS``, which no longer decide anything.
* ``outgoing``: sent messages (and their delivery attempts) created before the cutoff
  whose last attempt is older too and none of whose deliveries is still due.
* ``ticks``: schedule ticks, except each workflow's latest one.
* ``heartbeats``, ``refusals``: worker heartbeats and the per-minute refusal counts.

Rows go in chunks of ``batch_size`` primary keys, each chunk in its own transaction with
its references cleared first, children before parents, so a prune of a million rows
never holds one long transaction and never loads the rows into Python.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from automate.conf import settings as app_settings
from automate.flow.models import RunWait, WaitStatus
from automate.models import (
    FINISHED_RUN_STATUSES,
    RunStatus,
    StepRun,
    WebhookRefusalMinute,
    WorkerHeartbeat,
    WorkflowRun,
)
from automate.outgoing.api import OUTGOING_KEY
from automate.outgoing.models import DeliveryAttempt, OutgoingMessage
from automate.replays import WebhookReceipt
from automate.schedules.models import ScheduleTick
from automate_core.outbox.models import DUE_STATUSES, OutboxItem, OutboxStatus

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_RETENTION",
    "KINDS",
    "PRUNED_BY_SETTING",
    "parse_age",
    "prune",
    "retention",
]

logger = logging.getLogger("automate.retention")

#: Rows deleted per transaction.
DEFAULT_BATCH_SIZE = 5000

#: What ``AUTOMATE["RETENTION"]`` holds unless overridden, key by key. Dead letters are
#: kept until an operator decides (replay or delete), like procrastinate keeps failed jobs.
DEFAULT_RETENTION: dict[str, timedelta | None] = {
    "DONE": timedelta(days=7),
    "DEAD": None,
    "RUNS": timedelta(days=30),
    "OUTGOING": timedelta(days=30),
    "TICKS": timedelta(days=30),
    "HEARTBEATS": timedelta(days=7),
    "REFUSALS": timedelta(days=7),
}

#: The kinds :func:`prune` knows, in the order it deletes them: runs before the outbox
#: items they point at, so fewer links need clearing.
KINDS = ("runs", "done", "dead", "receipts", "outgoing", "ticks", "heartbeats", "refusals")

#: Each kind's ``RETENTION`` key; receipts follow ``WEBHOOK_REPLAY_WINDOW_SECONDS``.
PRUNED_BY_SETTING = {kind: kind.upper() for kind in KINDS if kind != "receipts"}

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(value: Any) -> timedelta | None:
    """A retention value as a timedelta: a timedelta, a number of seconds, or a string
    like ``"7d"``, ``"12h"``, ``"30m"``, ``"3600"``; ``None`` stays ``None`` (forever).

    ValueError for anything else, or for a negative age.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        age = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        age = timedelta(seconds=value)
    elif isinstance(value, str) and (match := _AGE.match(value)):
        age = timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    else:
        raise ValueError(
            f"{value!r} is not an age: use a timedelta, seconds, or a string like '7d'"
        )
    if age < timedelta(0):
        raise ValueError(f"{value!r} is negative")
    return age


def retention(overrides: Mapping[str, Any] | None = None) -> dict[str, timedelta | None]:
    """The retention of each ``RETENTION`` key: the defaults, then ``AUTOMATE["RETENTION"]``,
    then ``overrides``. ValueError for an unknown key or a bad value."""
    configured = dict(app_settings.RETENTION)
    configured.update(overrides or {})
    ages: dict[str, timedelta | None] = dict(DEFAULT_RETENTION)
    for key, value in configured.items():
        if key not in DEFAULT_RETENTION:
            known = ", ".join(DEFAULT_RETENTION)
            raise ValueError(f"RETENTION has no key {key!r}; the keys are {known}")
        ages[key] = parse_age(value)
    return ages


@dataclass(frozen=True)
class _Kind:
    model: type[models.Model]
    #: The rows of this kind that may go, given the cutoff(s).
    eligible: Callable[[dict[str, datetime | None]], models.QuerySet[Any] | None]
    #: Deletes one chunk (in its transaction) and returns how many rows of the kind went.
    delete: Callable[[list[Any], dict[str, datetime | None]], int]


def prune(
    *,
    only: Iterable[str] | None = None,
    older_than: timedelta | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    now: datetime | None = None,
) -> dict[str, int]:
    """Delete what ``AUTOMATE["RETENTION"]`` no longer keeps; return how many rows of
    each kind went (or would go, with ``dry_run``), in :data:`KINDS` order.

    ``only`` limits it to some kinds; ``older_than`` replaces every retention but the
    receipts' (whose window is the replay protection itself), kinds kept forever
    included. Each kind is deleted ``batch_size`` rows per transaction.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    selected = list(KINDS) if only is None else list(dict.fromkeys(only))
    unknown = [kind for kind in selected if kind not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind {', '.join(unknown)}; the kinds are {', '.join(KINDS)}")
    now = now or timezone.now()
    cutoffs = _cutoffs(now, older_than)
    counts: dict[str, int] = {}
    for kind in KINDS:
        if kind not in selected:
            continue
        spec = _SPECS[kind]
        rows = spec.eligible(cutoffs)
        if rows is None:
            counts[kind] = 0
        elif dry_run:
            counts[kind] = rows.count()
        else:
            counts[kind] = _delete_in_chunks(rows, spec, cutoffs, batch_size)
    if not dry_run and any(counts.values()):
        logger.info("pruned %s", ", ".join(f"{kind}={n}" for kind, n in counts.items() if n))
    return counts


def _cutoffs(now: datetime, older_than: timedelta | None) -> dict[str, datetime | None]:
    if older_than is not None:
        ages: dict[str, timedelta | None] = dict.fromkeys(DEFAULT_RETENTION, older_than)
    else:
        ages = retention()
    cutoffs: dict[str, datetime | None] = {
        kind: None if ages[key] is None else now - ages[key]  # type: ignore[operator]
        for kind, key in PRUNED_BY_SETTING.items()
    }
    cutoffs["receipts"] = now - timedelta(seconds=app_settings.WEBHOOK_REPLAY_WINDOW_SECONDS)
    return cutoffs


def _delete_in_chunks(
    rows: models.QuerySet[Any], spec: _Kind, cutoffs: dict[str, datetime | None], size: int
) -> int:
    # Keyset paging on the primary key: each chunk's SELECT starts where the last ended,
    # so rows kept (a run's item) are read once, not once per chunk.
    deleted = 0
    last: Any = None
    while True:
        page = rows if last is None else rows.filter(pk__gt=last)
        ids = list(page.order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return deleted
        with transaction.atomic(using=rows.db):
            deleted += spec.delete(ids, cutoffs)
        if len(ids) < size:
            return deleted
        last = ids[-1]


def _raw_delete(rows: models.QuerySet[Any]) -> int:
    # One DELETE, no collector: the callers have dealt with every reference already, and
    # Django's collector would load each row (a payload per outbox item) into Python.
    return rows._raw_delete(rows.db)


# -- Outbox items ---------------------------------------------------------------------------


def _item_needed() -> Q:
    """Items an unfinished run still needs: the event it was made for, the event that
    resumed it, the timer or event of one of its waits."""
    unfinished = ~Q(status__in=FINISHED_RUN_STATUSES)
    runs = WorkflowRun.objects.filter(unfinished)
    waits = RunWait.objects.exclude(run__status__in=FINISHED_RUN_STATUSES)
    return (
        Q(Exists(runs.filter(outbox_item=OuterRef("pk"))))
        | Q(Exists(runs.filter(resume_item=OuterRef("pk"))))
        | Q(Exists(waits.filter(timer=OuterRef("pk"))))
        | Q(Exists(waits.filter(resolved_by=OuterRef("pk"))))
    )


def _settled(status: str, cutoff: datetime) -> Q:
    if status == OutboxStatus.DONE:
        return Q(status=OutboxStatus.DONE, completed_at__lt=cutoff)
    # A dead letter records no time of death: available_at is when its last attempt was
    # due, which is within a lease of it (a replay sets it again, to the replay's time).
    return Q(status=OutboxStatus.DEAD, available_at__lt=cutoff)


def _items(status: str) -> Callable[[dict[str, datetime | None]], models.QuerySet[Any] | None]:
    def eligible(cutoffs: dict[str, datetime | None]) -> models.QuerySet[Any] | None:
        cutoff = cutoffs[status]
        if cutoff is None:
            return None
        return OutboxItem.objects.filter(_settled(status, cutoff)).exclude(_item_needed())

    return eligible


def _delete_items(status: str) -> Callable[[list[Any], dict[str, datetime | None]], int]:
    def delete(ids: list[Any], cutoffs: dict[str, datetime | None]) -> int:
        cutoff = cutoffs[status]
        assert cutoff is not None
        # What on_delete=SET_NULL would do, one UPDATE per column, for finished runs only:
        # an unfinished one that took an item up since the SELECT keeps its link ...
        runs = WorkflowRun.objects.filter(status__in=FINISHED_RUN_STATUSES)
        waits = RunWait.objects.filter(run__status__in=FINISHED_RUN_STATUSES)
        runs.filter(outbox_item__in=ids).update(outbox_item=None)
        runs.filter(resume_item__in=ids).update(resume_item=None)
        waits.filter(timer__in=ids).update(timer=None)
        waits.filter(resolved_by__in=ids).update(resolved_by=None)
        ScheduleTick.objects.filter(outbox_item__in=ids).update(outbox_item=None)
        # ... and the DELETE checks the conditions again, so that item stays.
        rows = OutboxItem.objects.filter(_settled(status, cutoff), pk__in=ids)
        return _raw_delete(rows.exclude(_item_needed()))

    return delete


# -- Runs -----------------------------------------------------------------------------------


def _runs(cutoffs: dict[str, datetime | None]) -> models.QuerySet[Any] | None:
    cutoff, dead_cutoff = cutoffs["runs"], cutoffs["dead"]
    if cutoff is None:
        return None
    ended = Q(status__in=[s for s in FINISHED_RUN_STATUSES if s != RunStatus.DEAD])
    ended &= Q(finished_at__lt=cutoff)
    if dead_cutoff is not None:
        # A dead run is a dead letter too: it stays while either retention keeps it.
        ended |= Q(status=RunStatus.DEAD, finished_at__lt=min(cutoff, dead_cutoff))
    unfinished = WorkflowRun.objects.exclude(status__in=FINISHED_RUN_STATUSES)
    return (
        WorkflowRun.objects.filter(ended)
        .exclude(Exists(unfinished.filter(parent_run=OuterRef("pk"))))
        .exclude(Exists(unfinished.filter(pk=OuterRef("parent_run"))))
        .exclude(
            Exists(RunWait.objects.filter(child_run=OuterRef("pk"), status=WaitStatus.WAITING))
        )
    )


def _delete_runs(ids: list[Any], cutoffs: dict[str, datetime | None]) -> int:
    RunWait.objects.filter(run__in=ids).delete()
    RunWait.objects.filter(child_run__in=ids).update(child_run=None)
    WorkflowRun.objects.filter(parent_run__in=ids).update(parent_run=None)
    _raw_delete(StepRun.objects.filter(run__in=ids))
    return _raw_delete(WorkflowRun.objects.filter(pk__in=ids))


# -- Outgoing webhooks ----------------------------------------------------------------------


def _outgoing(cutoffs: dict[str, datetime | None]) -> models.QuerySet[Any] | None:
    cutoff = cutoffs["outgoing"]
    if cutoff is None:
        return None
    recent = DeliveryAttempt.objects.filter(message=OuterRef("pk"), created_at__gte=cutoff)
    # One list of the messages still being delivered, which the database can hash once,
    # rather than a lookup in the outbox per message.
    busy = _unsettled_deliveries().annotate(
        message=Cast(KeyTextTransform("message", "payload"), models.BigIntegerField())
    )
    return (
        OutgoingMessage.objects.filter(created_at__lt=cutoff)
        .exclude(Exists(recent))
        .exclude(pk__in=busy.filter(message__isnull=False).values("message"))
    )


def _unsettled_deliveries() -> models.QuerySet[OutboxItem]:
    # A delivery's outbox item names its message in its payload only; the unsettled ones
    # are found through the outbox's two partial indexes, which hold just those.
    return OutboxItem.objects.filter(
        Q(status__in=DUE_STATUSES) | Q(status=OutboxStatus.LEASED), connector_key=OUTGOING_KEY
    )


def _delete_outgoing(ids: list[Any], cutoffs: dict[str, datetime | None]) -> int:
    # Again in the transaction: a replay may have queued a delivery since the SELECT.
    unsettled = _unsettled_deliveries().filter(payload__message__in=ids)
    busy = set(unsettled.values_list("payload__message", flat=True))
    ids = [pk for pk in ids if pk not in busy]
    if not ids:
        return 0
    _raw_delete(DeliveryAttempt.objects.filter(message__in=ids))
    return _raw_delete(OutgoingMessage.objects.filter(pk__in=ids))


# -- The rest -------------------------------------------------------------------------------


def _receipts(cutoffs: dict[str, datetime | None]) -> models.QuerySet[Any] | None:
    return WebhookReceipt.objects.filter(seen_at__lt=cutoffs["receipts"])


def _ticks(cutoffs: dict[str, datetime | None]) -> models.QuerySet[Any] | None:
    cutoff = cutoffs["ticks"]
    if cutoff is None:
        return None
    # Each schedule's latest tick stays: firing never reads it (the schedule row's
    # next_tick_at moves on, and a tick's outbox item is unique on its own), but it is
    # the record of when the schedule last fired.
    later = ScheduleTick.objects.filter(
        workflow=OuterRef("workflow"), scheduled_for__gt=OuterRef("scheduled_for")
    )
    return ScheduleTick.objects.filter(Exists(later), created_at__lt=cutoff)


def _older(model: type[models.Model], field: str, kind: str) -> _Kind:
    def eligible(cutoffs: dict[str, datetime | None]) -> models.QuerySet[Any] | None:
        cutoff = cutoffs[kind]
        return None if cutoff is None else model._default_manager.filter(**{f"{field}__lt": cutoff})

    return _Kind(model, eligible, _plain_delete(model))


def _plain_delete(
    model: type[models.Model],
) -> Callable[[list[Any], dict[str, datetime | None]], int]:
    def delete(ids: list[Any], cutoffs: dict[str, datetime | None]) -> int:
        return _raw_delete(model._default_manager.filter(pk__in=ids))

    return delete


def _receipts_delete(ids: list[Any], cutoffs: dict[str, datetime | None]) -> int:
    # A composite key: pk__in takes the (connection, digest) tuples; seen_at again, so a
    # receipt taken over by a new request since the SELECT stays.
    rows = WebhookReceipt.objects.filter(pk__in=ids, seen_at__lt=cutoffs["receipts"])
    return _raw_delete(rows)


_SPECS: dict[str, _Kind] = {
    "runs": _Kind(WorkflowRun, _runs, _delete_runs),
    "done": _Kind(OutboxItem, _items(OutboxStatus.DONE), _delete_items(OutboxStatus.DONE)),
    "dead": _Kind(OutboxItem, _items(OutboxStatus.DEAD), _delete_items(OutboxStatus.DEAD)),
    "receipts": _Kind(WebhookReceipt, _receipts, _receipts_delete),
    "outgoing": _Kind(OutgoingMessage, _outgoing, _delete_outgoing),
    "ticks": _Kind(ScheduleTick, _ticks, _plain_delete(ScheduleTick)),
    "heartbeats": _older(WorkerHeartbeat, "seen_at", "heartbeats"),
    "refusals": _older(WebhookRefusalMinute, "minute", "refusals"),
}

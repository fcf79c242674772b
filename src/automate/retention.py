"""Delete settled rows once they are older than ``AUTOMATE["RETENTION"]`` says.

Nothing else deletes them: done outbox items, finished runs, delivered webhooks and
fired ticks pile up forever otherwise, and a large settled outbox slows the claim.
:func:`prune` is the whole mechanism; ``manage.py automate_prune`` calls it, and so can
a Celery beat entry or a schedule of your own.

What may go, kind by kind (``None`` in ``RETENTION`` keeps a kind forever):

* ``done`` / ``dead``: outbox items done or dead-lettered (by ``completed_at``, the time
  they were done or died; for a dead letter that died before that was recorded,
  ``available_at``, the due time of its last attempt) before the cutoff. Never an item
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


Cutoffs = dict[str, datetime | None]
Rows = models.QuerySet[Any]


@dataclass(frozen=True)
class _Kind:
    #: The rows old enough by their own columns (None: the kind is kept forever). A
    #: chunk's SELECT pages through these: a plain filter on one table, which PostgreSQL
    #: plans as a short index scan (the full conditions made it expect a long one, and
    #: compile it with JIT, about a second per chunk).
    candidates: Callable[[Cutoffs], Rows | None]
    #: Those of ``rows`` that may go, by the rows that depend on them.
    may_go: Callable[[Rows, Cutoffs], Rows]
    #: Deletes ``rows`` (a chunk's, through ``may_go``), what points at them first; returns
    #: how many went. Runs in the chunk's transaction.
    delete: Callable[[Rows], int]

    def eligible(self, cutoffs: Cutoffs) -> Rows | None:
        rows = self.candidates(cutoffs)
        return None if rows is None else self.may_go(rows, cutoffs)


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
        if dry_run:
            rows = spec.eligible(cutoffs)
            counts[kind] = 0 if rows is None else rows.count()
        else:
            counts[kind] = _delete_in_chunks(spec, cutoffs, batch_size)
    if not dry_run and any(counts.values()):
        logger.info("pruned %s", ", ".join(f"{kind}={n}" for kind, n in counts.items() if n))
    return counts


def _cutoffs(now: datetime, older_than: timedelta | None) -> Cutoffs:
    if older_than is not None:
        ages: dict[str, timedelta | None] = dict.fromkeys(DEFAULT_RETENTION, older_than)
    else:
        ages = retention()
    cutoffs: Cutoffs = {
        kind: None if ages[key] is None else now - ages[key]  # type: ignore[operator]
        for kind, key in PRUNED_BY_SETTING.items()
    }
    cutoffs["receipts"] = now - timedelta(seconds=app_settings.WEBHOOK_REPLAY_WINDOW_SECONDS)
    return cutoffs


def _delete_in_chunks(spec: _Kind, cutoffs: Cutoffs, size: int) -> int:
    candidates = spec.candidates(cutoffs)
    if candidates is None:
        return 0
    # Keyset paging on the primary key: each chunk's SELECT starts where the last ended,
    # so rows kept (a run's item) are read once, not once per chunk.
    deleted = 0
    last: Any = None
    while True:
        page = candidates if last is None else candidates.filter(pk__gt=last)
        ids = list(page.order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return deleted
        deleted += _delete_chunk(spec, ids, cutoffs)
        if len(ids) < size:
            return deleted
        last = ids[-1]


def _delete_chunk(spec: _Kind, ids: list[Any], cutoffs: Cutoffs) -> int:
    """Delete those of ``ids`` that may go, decided again in the chunk's transaction."""
    candidates = spec.candidates(cutoffs)
    assert candidates is not None
    with transaction.atomic(using=candidates.db):
        return spec.delete(spec.may_go(candidates.filter(pk__in=ids), cutoffs))


def _pks(rows: Rows) -> list[Any]:
    return list(rows.values_list("pk", flat=True))


def _raw_delete(rows: Rows) -> int:
    # One DELETE, no collector: the callers have dealt with every reference already, and
    # Django's collector would load each row (a payload per outbox item) into Python.
    return rows._raw_delete(rows.db)


# -- Outbox items ---------------------------------------------------------------------------


def _items(status: str) -> Callable[[Cutoffs], Rows | None]:
    def candidates(cutoffs: Cutoffs) -> Rows | None:
        cutoff = cutoffs[status]
        if cutoff is None:
            return None
        if status == OutboxStatus.DONE:
            return OutboxItem.objects.filter(status=OutboxStatus.DONE, completed_at__lt=cutoff)
        # A dead letter's completed_at is its time of death. One that died before dead
        # letters recorded it has none: its available_at, when its last attempt was due,
        # is within a lease of it.
        return OutboxItem.objects.filter(
            Q(completed_at__lt=cutoff) | Q(completed_at__isnull=True, available_at__lt=cutoff),
            status=OutboxStatus.DEAD,
        )

    return candidates


def _items_may_go(rows: Rows, cutoffs: Cutoffs) -> Rows:
    """Not the items an unfinished run still needs: the event it was made for, the event
    that resumed it, the timer or event of one of its waits."""
    runs = WorkflowRun.objects.exclude(status__in=FINISHED_RUN_STATUSES)
    waits = RunWait.objects.exclude(run__status__in=FINISHED_RUN_STATUSES)
    return (
        rows.exclude(Exists(runs.filter(outbox_item=OuterRef("pk"))))
        .exclude(Exists(runs.filter(resume_item=OuterRef("pk"))))
        .exclude(Exists(waits.filter(timer=OuterRef("pk"))))
        .exclude(Exists(waits.filter(resolved_by=OuterRef("pk"))))
    )


def _delete_items(rows: Rows) -> int:
    ids = _pks(rows)
    if not ids:
        return 0
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
    return _raw_delete(rows)


# -- Runs -----------------------------------------------------------------------------------


def _runs(cutoffs: Cutoffs) -> Rows | None:
    cutoff, dead_cutoff = cutoffs["runs"], cutoffs["dead"]
    if cutoff is None:
        return None
    ended = Q(status__in=[s for s in FINISHED_RUN_STATUSES if s != RunStatus.DEAD])
    ended &= Q(finished_at__lt=cutoff)
    if dead_cutoff is not None:
        # A dead run is a dead letter too: it stays while either retention keeps it.
        ended |= Q(status=RunStatus.DEAD, finished_at__lt=min(cutoff, dead_cutoff))
    return WorkflowRun.objects.filter(ended)


def _runs_may_go(rows: Rows, cutoffs: Cutoffs) -> Rows:
    """Not a run whose parent or child is unfinished, nor one its parent waits on."""
    unfinished = WorkflowRun.objects.exclude(status__in=FINISHED_RUN_STATUSES)
    awaited = RunWait.objects.filter(child_run=OuterRef("pk"), status=WaitStatus.WAITING)
    return (
        rows.exclude(Exists(unfinished.filter(parent_run=OuterRef("pk"))))
        .exclude(Exists(unfinished.filter(pk=OuterRef("parent_run"))))
        .exclude(Exists(awaited))
    )


def _delete_runs(rows: Rows) -> int:
    ids = _pks(rows)
    if not ids:
        return 0
    RunWait.objects.filter(run__in=ids).delete()  # nothing points at a wait: one DELETE
    RunWait.objects.filter(child_run__in=ids).update(child_run=None)
    WorkflowRun.objects.filter(parent_run__in=ids).update(parent_run=None)
    _raw_delete(StepRun.objects.filter(run__in=ids))
    return _raw_delete(WorkflowRun.objects.filter(pk__in=ids))


# -- Outgoing webhooks ----------------------------------------------------------------------


def _outgoing(cutoffs: Cutoffs) -> Rows | None:
    cutoff = cutoffs["outgoing"]
    return None if cutoff is None else OutgoingMessage.objects.filter(created_at__lt=cutoff)


def _outgoing_may_go(rows: Rows, cutoffs: Cutoffs) -> Rows:
    """Not a message attempted lately (a replay), nor one still being delivered."""
    recent = DeliveryAttempt.objects.filter(
        message=OuterRef("pk"), created_at__gte=cutoffs["outgoing"]
    )
    # A delivery's outbox item names its message in its payload only. The unsettled ones
    # are read through the outbox's two partial indexes, which hold just those, into one
    # list the database hashes once, rather than looked up in the outbox per message.
    busy = OutboxItem.objects.filter(
        Q(status__in=DUE_STATUSES) | Q(status=OutboxStatus.LEASED), connector_key=OUTGOING_KEY
    ).annotate(message=Cast(KeyTextTransform("message", "payload"), models.BigIntegerField()))
    return rows.exclude(Exists(recent)).exclude(
        pk__in=busy.filter(message__isnull=False).values("message")
    )


def _delete_outgoing(rows: Rows) -> int:
    ids = _pks(rows)
    if not ids:
        return 0
    _raw_delete(DeliveryAttempt.objects.filter(message__in=ids))
    return _raw_delete(OutgoingMessage.objects.filter(pk__in=ids))


# -- The rest -------------------------------------------------------------------------------


def _ticks_may_go(rows: Rows, cutoffs: Cutoffs) -> Rows:
    # Each schedule's latest tick stays: firing never reads it (the schedule row's
    # next_tick_at moves on, and a tick's outbox item is unique on its own), but it is
    # the record of when the schedule last fired.
    later = ScheduleTick.objects.filter(
        workflow=OuterRef("workflow"), scheduled_for__gt=OuterRef("scheduled_for")
    )
    return rows.filter(Exists(later))


def _older(model: type[models.Model], field: str, kind: str) -> Callable[[Cutoffs], Rows | None]:
    def candidates(cutoffs: Cutoffs) -> Rows | None:
        cutoff = cutoffs[kind]
        return None if cutoff is None else model._default_manager.filter(**{f"{field}__lt": cutoff})

    return candidates


def _all(rows: Rows, cutoffs: Cutoffs) -> Rows:
    return rows


_SPECS: dict[str, _Kind] = {
    "runs": _Kind(_runs, _runs_may_go, _delete_runs),
    "done": _Kind(_items(OutboxStatus.DONE), _items_may_go, _delete_items),
    "dead": _Kind(_items(OutboxStatus.DEAD), _items_may_go, _delete_items),
    # Receipts go by their composite key; seen_at is checked again in the DELETE, so a
    # receipt taken over by a new request since the SELECT stays.
    "receipts": _Kind(_older(WebhookReceipt, "seen_at", "receipts"), _all, _raw_delete),
    "outgoing": _Kind(_outgoing, _outgoing_may_go, _delete_outgoing),
    "ticks": _Kind(_older(ScheduleTick, "created_at", "ticks"), _ticks_may_go, _raw_delete),
    "heartbeats": _Kind(_older(WorkerHeartbeat, "seen_at", "heartbeats"), _all, _raw_delete),
    "refusals": _Kind(_older(WebhookRefusalMinute, "minute", "refusals"), _all, _raw_delete),
}

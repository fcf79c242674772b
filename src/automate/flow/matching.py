"""``wait_for_event``: which waiting run an incoming event resumes.

A waiting run's :class:`~automate.flow.models.RunWait` row holds a key: the hash of the
connector, the event type and each ``match`` path with the value it rendered to when
the wait began. An event computes the same key from its own payload, for each set of
match paths that ``wait_for_event`` steps of that connector and type declare (a handful,
read from the workflow definitions), and looks the keys up once in the partial index of
waiting rows: a million waiting runs cost an event one index probe per path set, never a
scan. The first later matching event wins the wait with a conditional UPDATE and writes
the outbox item that resumes the run (:mod:`automate.flow.parking`).

Both sides look, so an event that arrives while the wait is being parked is not missed:
an event sees the waits committed before it is processed, and a new wait's first timer,
due at once, looks for events that arrived since the wait began.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction
from django.utils import timezone

from automate.flow import bulk
from automate.flow.models import RunWait, WaitKind, WaitStatus
from automate.models import RESUME_CONNECTOR_KEY, WorkflowStep
from automate_core.outbox.models import OutboxItem

__all__ = ["early_event", "match_key", "resolve", "resolve_all", "retire_timer", "wake_waiters"]

logger = logging.getLogger("automate.flow")

#: How many events since a wait began its first timer reads, at most.
CATCH_UP_LIMIT = 10_000

_MISSING = object()


def match_key(connector: str, event_type: str, match: Mapping[str, Any]) -> str:
    """The lookup key of a wait, or of an event for one set of match paths."""
    body = json.dumps([connector, event_type, sorted(match.items())], default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def extract(payload: Any, path: str) -> Any:
    """The value at dotted ``path`` of ``payload`` (list indexes are numbers), or
    ``_MISSING``."""
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def key_of(item: OutboxItem, paths: Iterable[str]) -> str | None:
    """``item``'s key for a set of match paths; None when its payload lacks one of them."""
    values = {}
    for path in paths:
        value = extract(item.payload, path)
        if value is _MISSING:
            return None
        values[path] = value
    return match_key(item.connector_key, item.event_type, values)


def _path_sets(kinds: set[tuple[str, str]]) -> dict[tuple[str, str], set[tuple[str, ...]]]:
    """The sets of match paths ``wait_for_event`` steps declare, by connector and type."""
    found: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for config in WorkflowStep.objects.filter(type="wait_for_event").values_list(
        "config", flat=True
    ):
        kind = (str(config.get("connector")), str(config.get("event")))
        if kind in kinds:
            found.setdefault(kind, set()).add(tuple(sorted(config.get("match") or {})))
    return found


def wake_waiters(items: Sequence[OutboxItem]) -> int:
    """Give each wait the first of ``items`` that matches it and arrived after it began;
    return how many waits were won. Idempotent: a won wait no longer matches."""
    events = [item for item in items if not item.connector_key.startswith("_")]
    if not events:
        return 0
    path_sets = _path_sets({(item.connector_key, item.event_type) for item in events})
    if not path_sets:
        return 0
    by_key: dict[str, list[OutboxItem]] = {}
    for item in events:
        for paths in path_sets.get((item.connector_key, item.event_type), ()):
            key = key_of(item, paths)
            if key is not None:
                by_key.setdefault(key, []).append(item)
    if not by_key:
        return 0
    waits = RunWait.objects.filter(
        status=WaitStatus.WAITING,
        kind=WaitKind.EVENT,
        connector_key__in={item.connector_key for item in events},
        event_type__in={item.event_type for item in events},
        match_key__in=list(by_key),
    ).select_related("run")
    pairs = []
    for wait in waits.order_by("id"):
        for item in sorted(by_key[wait.match_key], key=lambda i: (i.created_at, i.pk)):
            if item.created_at >= wait.created_at:
                pairs.append((wait, item))
                break
    return resolve_all(pairs) if pairs else 0


def resolve_all(pairs: Sequence[tuple[RunWait, OutboxItem]]) -> int:
    """Mark each wait matched by its event if it still waits, each with a new ``_resume``
    item that resumes its run; return how many were won. One transaction and a fixed
    number of statements for the batch: the waits still waiting locked in id order (so
    two workers never lock them in opposite orders; a wait another worker won meanwhile
    is left out), the items inserted at once, one UPDATE of the waits, one of the won
    waits' timers (retired, see :func:`retire_timer`)."""
    now = timezone.now()
    with transaction.atomic():
        ids = [wait.pk for wait, _ in pairs]
        still = set(
            RunWait.objects.select_for_update()
            .filter(pk__in=ids, status=WaitStatus.WAITING)
            .order_by("id")
            .values_list("pk", flat=True)
        )
        pairs = [(wait, event) for wait, event in pairs if wait.pk in still]
        if not pairs:
            return 0
        items = OutboxItem.objects.bulk_create(
            [
                OutboxItem(
                    connector_key=RESUME_CONNECTOR_KEY,
                    event_type="event.matched",
                    payload={"run": wait.run_id},  # type: ignore[attr-defined]
                    trace_id=wait.run.trace_id,
                )
                for wait, _ in pairs
            ]
        )
        if any(item.pk is None for item in items):  # a backend that cannot return bulk ids
            transaction.set_rollback(True)
            return sum(resolve(wait, event, wake=True) for wait, event in pairs)
        won = bulk.update_each(
            RunWait,
            {
                wait.pk: [{"type": event.event_type, "payload": event.payload}, item.pk]
                for (wait, event), item in zip(pairs, items, strict=True)
            },
            ["event", "resolved_by"],
            same={"status": WaitStatus.MATCHED, "resolved_at": now},
            only_if={"status": WaitStatus.WAITING},
        )
        ids = [wait.pk for wait, _ in pairs]
        if won < len(pairs):
            # Won by another worker between the lock and the UPDATE (SQLite has no row
            # locks), or a wait given twice: the items that won nothing are deleted.
            kept = dict(
                RunWait.objects.filter(
                    pk__in=ids, resolved_by__in=[item.pk for item in items]
                ).values_list("pk", "resolved_by_id")
            )
            ids = list(kept)
            lost = [item.pk for item in items if item.pk not in kept.values()]
            OutboxItem.objects.filter(pk__in=lost).delete()
        OutboxItem.objects.filter(timer_of__pk__in=ids, status__in=["pending", "failed"]).update(
            status="done", completed_at=now
        )
    return won


def resolve(wait: RunWait, event: OutboxItem, *, wake: bool, by: OutboxItem | None = None) -> int:
    """Mark ``wait`` matched by ``event`` if it still waits: 1 when this call won it.

    With ``wake`` a new ``_resume`` item resolves it and resumes the run; else ``by`` (the
    item being processed) does.
    """
    now = timezone.now()
    with transaction.atomic():
        if wake:
            by = OutboxItem.objects.create(
                connector_key=RESUME_CONNECTOR_KEY,
                event_type="event.matched",
                payload={"run": wait.run_id},  # type: ignore[attr-defined]
                trace_id=wait.run.trace_id,
            )
        won = RunWait.objects.filter(pk=wait.pk, status=WaitStatus.WAITING).update(
            status=WaitStatus.MATCHED,
            event={"type": event.event_type, "payload": event.payload},
            resolved_by=by,
            resolved_at=now,
        )
        if not won:
            transaction.set_rollback(True)  # someone else won it: no wake item
        else:
            retire_timer(wait.pk, keep=by)
    return won


def retire_timer(wait_id: int, *, keep: OutboxItem | None = None) -> None:
    """Mark the pending timer of a wait that ended otherwise done, so it does not sit in
    the queue until its deadline (it would resume nothing)."""
    timers = OutboxItem.objects.filter(timer_of__pk=wait_id, status__in=["pending", "failed"])
    if keep is not None:
        timers = timers.exclude(pk=keep.pk)
    timers.update(status="done", completed_at=timezone.now())


def early_event(wait: RunWait) -> OutboxItem | None:
    """The first event that matches ``wait`` among those that arrived since it began."""
    paths = sorted(wait.match)
    candidates = OutboxItem.objects.filter(
        connector_key=wait.connector_key,
        event_type=wait.event_type,
        created_at__gte=wait.created_at,
    ).order_by("created_at", "id")[:CATCH_UP_LIMIT]
    for item in candidates:
        if key_of(item, paths) == wait.match_key:
            return item
    return None

"""``wait_for_event``: which waiting run an incoming event resumes.

A waiting run's :class:`~automate.flow.models.RunWait` row holds a key: the hash of the
connector, the event type and each ``match`` path with the value it rendered to when
the wait began. An event computes the same key from its own payload, for each set of
match paths that ``wait_for_event`` steps of that connector and type declare (a handful,
read from the workflow definitions), and looks the keys up once in the partial index of
waiting rows: a million waiting runs cost an event one index probe per path set, never a
scan. The first later matching event wins the wait with a conditional UPDATE and takes
its run over: the claim that holds the event resumes the run in the same pass, as the
item that carries it from then on (:mod:`automate.flow.parking`).

Both sides look, so an event that arrives while the wait is being parked is not missed:
an event sees the waits committed before it is processed, and a new wait's first timer,
due at once, looks for events that arrived since the wait began.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from automate import compiled
from automate.flow import bulk
from automate.flow.models import RunWait, WaitKind, WaitStatus
from automate.models import API_SOURCE_PREFIX, RunStatus, WorkflowRun, WorkflowStep, trigger_key
from automate_core.outbox.models import OutboxItem

__all__ = [
    "Woken",
    "early_events",
    "match_key",
    "resolve_all",
    "retire_timer",
    "wake_waiters",
]

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
    return match_key(trigger_key(item.connector_key), item.event_type, values)


def _path_sets(kinds: set[tuple[str, str]]) -> dict[tuple[str, str], set[tuple[str, ...]]]:
    """The sets of match paths ``wait_for_event`` steps declare, by connector and type."""
    found: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    # Every batch of events reads them: compiled once per connection (automate.compiled).
    configs = compiled.fetch("wait_for_event_configs", WorkflowStep, _wait_configs, [])
    for config in configs:
        kind = (str(config.get("connector")), str(config.get("event")))
        if kind in kinds:
            found.setdefault(kind, set()).add(tuple(sorted(config.get("match") or {})))
    return found


def _wait_configs() -> QuerySet[WorkflowStep, dict[str, Any]]:
    return WorkflowStep.objects.filter(type="wait_for_event").values_list("config", flat=True)


@dataclass
class Woken:
    """What a batch of events won (:func:`wake_waiters`): the waits, by run id, and the
    runs handed over to them, by the event that carries each from then on; ``runs`` is
    None when they must be read (a run the takeover aimed at was no longer waiting)."""

    waits: dict[int, RunWait] = field(default_factory=dict)
    runs: dict[int, list[WorkflowRun]] | None = field(default_factory=dict)


def wake_waiters(items: Sequence[OutboxItem]) -> Woken:
    """Give each wait the first of ``items`` that matches it and arrived after it began,
    and the wait's run to that item. Idempotent: a won wait no longer matches.

    The read that locks the waits brings their runs and workflows along, so the runs
    handed over need no second read: the batch executes them as they were read, with the
    takeover's own changes (``running``, ``resume_item``)."""
    events = [item for item in items if not item.connector_key.startswith("_")]
    if not events:
        return Woken()
    # An API event (stored as "api:<connection>") resumes the waits on its connection.
    path_sets = _path_sets({(trigger_key(item.connector_key), item.event_type) for item in events})
    if not path_sets:
        return Woken()
    by_key: dict[str, list[OutboxItem]] = {}
    for item in events:
        for paths in path_sets.get((trigger_key(item.connector_key), item.event_type), ()):
            key = key_of(item, paths)
            if key is not None:
                by_key.setdefault(key, []).append(item)
    if not by_key:
        return Woken()
    with transaction.atomic():
        # The waits found are locked by the read that finds them, in id order, as
        # resolve_all locks them: a wait read here still waits until the commit. Their
        # runs are read, not locked: only the holder of a run's wait changes a waiting
        # run (the takeover's UPDATE is conditional all the same).
        connectors = list(dict.fromkeys(trigger_key(item.connector_key) for item in events))
        types = list(dict.fromkeys(item.event_type for item in events))
        split = (len(connectors), len(types))
        # Every batch of events sends it: compiled once per connection and shape
        # (automate.compiled).
        waits = compiled.fetch(
            ("event_waits", split),
            RunWait,
            lambda *values: _waiting(split, values),
            [*connectors, *types, *by_key],
            for_write=True,
        )
        pairs = []
        for wait in waits:
            for item in sorted(by_key[wait.match_key], key=lambda i: (i.created_at, i.pk)):
                if item.created_at >= wait.created_at:
                    pairs.append((wait, item))
                    break
        won = resolve_all(pairs, locked=True) if pairs else {}
    return Woken(won, _handed_over(won))


def _waiting(split: tuple[int, int], values: Sequence[str]) -> QuerySet[RunWait]:
    """The waits of :func:`wake_waiters`, locked: ``values`` are ``split[0]`` connection
    keys, ``split[1]`` event types, then the match keys."""
    connectors, types = values[: split[0]], values[split[0] : sum(split)]
    return (
        RunWait.objects.select_for_update(of=("self",))
        .select_related("run__workflow")
        .filter(
            status=WaitStatus.WAITING,
            kind=WaitKind.EVENT,
            connector_key__in=connectors,
            event_type__in=types,
            match_key__in=values[sum(split) :],
        )
        .order_by("id")
    )


def _handed_over(won: dict[int, RunWait]) -> dict[int, list[WorkflowRun]] | None:
    """The runs of ``won`` by the event that took each over, as :func:`resolve_all` left
    them; None unless it handed every one over as it was read."""
    runs: dict[int, list[WorkflowRun]] = {}
    for wait in won.values():
        run = wait.run if RunWait.run.is_cached(wait) else None
        if run is None or getattr(run, "resumed_wait", None) is not wait:
            return None
        runs.setdefault(wait.resolved_by_id, []).append(run)  # type: ignore[attr-defined]
    return runs


def resolve_all(
    pairs: Sequence[tuple[RunWait, OutboxItem]], *, locked: bool = False
) -> dict[int, RunWait]:
    """Mark each wait matched by its event if it still waits, and hand its run over to
    that event: the run is ``running`` with ``resume_item`` = the event, so the claim
    that holds the event executes it right away (no second outbox item, no second claim),
    and a later claim of the same event, after a crash, resumes it the same way. Returns
    the waits won, by run id.

    One transaction and a fixed number of statements for the batch: the waits still
    waiting locked in id order (so two workers never lock them in opposite orders; a wait
    another worker won meanwhile is left out), one UPDATE of the waits, one of their runs
    (wait before run, as every takeover and ``cancel_run`` lock them), one of the won
    waits' timers, if any has one (retired, see :func:`retire_timer`). With ``locked``,
    the caller's transaction has read and locked the waits of ``pairs`` as they are
    (waiting), and the lock is not taken again.

    Waits read with their runs get them back as handed over (``running``, the event as
    ``resume_item``, the wait as ``resumed_wait``) when the runs' UPDATE changed every
    one of them; else as they were read."""
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        # Each wait still waiting, and its timer as of now (read under the lock): a wait
        # without a timeout has none once its first look is done, and then there is no
        # timer to retire.
        ids = [wait.pk for wait, _ in pairs]
        still: dict[int, Any]  # wait id -> its timer's id, or None
        if locked:
            still = {wait.pk: wait.timer_id for wait, _ in pairs}  # type: ignore[attr-defined]
        else:
            still = dict(
                RunWait.objects.select_for_update()
                .filter(pk__in=ids, status=WaitStatus.WAITING)
                .order_by("id")
                .values_list("pk", "timer_id")
            )
        given: dict[int, tuple[RunWait, OutboxItem]] = {}
        for wait, event in pairs:
            if wait.pk in still:
                given.setdefault(wait.pk, (wait, event))  # a wait given twice: the first
        if not given:
            return {}
        won = bulk.update_each(
            RunWait,
            {
                pk: [{"type": event.event_type, "payload": event.payload}, event.pk]
                for pk, (_, event) in given.items()
            },
            ["event", "resolved_by"],
            same={"status": WaitStatus.MATCHED, "resolved_at": now},
            only_if={"status": WaitStatus.WAITING},
        )
        if won < len(given):
            # Won by another worker between the lock and the UPDATE (SQLite has no row
            # locks): only the waits this batch's events resolved are ours.
            ours = RunWait.objects.filter(pk__in=list(given)).values_list("pk", "resolved_by_id")
            given = {pk: given[pk] for pk, by in ours if by == given[pk][1].pk}
        runs: dict[int, tuple[RunWait, OutboxItem]] = {}
        for wait, event in given.values():
            runs.setdefault(wait.run_id, (wait, event))  # type: ignore[attr-defined]
        moved = bulk.update_each(
            WorkflowRun,
            {run_id: [event.pk] for run_id, (_, event) in runs.items()},
            ["resume_item"],
            same={"status": RunStatus.RUNNING},
            only_if={"status": RunStatus.WAITING},
        )
        timers = [still[pk] for pk in given if still[pk] is not None]
        if timers:
            OutboxItem.objects.filter(pk__in=timers, status__in=["pending", "failed"]).update(
                status="done", completed_at=now
            )
    for wait, event in given.values():
        wait.status, wait.resolved_at = WaitStatus.MATCHED, now
        wait.event = {"type": event.event_type, "payload": event.payload}
        wait.resolved_by = event
    if moved == len(runs):
        _hand_over(runs.values())
    return {run_id: wait for run_id, (wait, _) in runs.items()}


def _hand_over(taken: Iterable[tuple[RunWait, OutboxItem]]) -> None:
    """Bring the runs read with the waits of ``taken`` up to date with their takeover by
    each pair's event (the UPDATE changed every one of them)."""
    for wait, event in taken:
        if RunWait.run.is_cached(wait):
            run = wait.run
            run.status, run.resume_item_id = RunStatus.RUNNING, event.pk  # type: ignore[attr-defined]
            run.resumed_wait = wait  # type: ignore[attr-defined]


def retire_timer(wait_id: int, *, keep: OutboxItem | None = None) -> None:
    """Mark the pending timer of a wait that ended otherwise done, so it does not sit in
    the queue until its deadline (it would resume nothing)."""
    timers = OutboxItem.objects.filter(timer_of__pk=wait_id, status__in=["pending", "failed"])
    if keep is not None:
        timers = timers.exclude(pk=keep.pk)
    timers.update(status="done", completed_at=timezone.now())


def early_event(wait: RunWait) -> OutboxItem | None:
    """The first event that matches ``wait`` among those that arrived since it began."""
    return early_events([wait]).get(wait.pk)


def early_events(waits: Sequence[RunWait]) -> dict[int, OutboxItem]:
    """For each of ``waits`` (``wait_for_event`` waits), the first event that matches it
    among those that arrived since it began, by wait id; a batch of first timers looks
    once per connection and event type, not once per wait.

    The look reads a range of the outbox's primary key: an event that arrived after a
    wait began was inserted after the item that carried its run into the pass that
    parked it (that item was inserted, committed and claimed before the wait began), so
    its id is larger. No index beyond the primary key serves it."""
    found: dict[int, OutboxItem] = {}
    if not waits:
        return found
    # The item that carried each run into the pass that parked it: from the runs read
    # with the waits (the timers' batch reads them so), else read here.
    carriers = {
        wait.run_id: wait.run.resume_item_id or wait.run.outbox_item_id  # type: ignore[attr-defined]
        for wait in waits
        if RunWait.run.is_cached(wait)
    }
    unread = {w.run_id for w in waits if w.run_id not in carriers}  # type: ignore[attr-defined]
    if unread:
        carriers.update(
            (run_id, resume or item)
            for run_id, resume, item in WorkflowRun.objects.filter(pk__in=unread).values_list(
                "pk", "resume_item_id", "outbox_item_id"
            )
        )
    kinds: dict[tuple[str, str], list[RunWait]] = {}
    for wait in waits:
        kinds.setdefault((wait.connector_key, wait.event_type), []).append(wait)
    for (connector, event_type), group in kinds.items():
        after = [carriers.get(w.run_id) for w in group]  # type: ignore[attr-defined]
        candidates = OutboxItem.objects.filter(
            connector_key__in=[connector, API_SOURCE_PREFIX + connector],
            event_type=event_type,
            created_at__gte=min(w.created_at for w in group),
        )
        if all(after):
            candidates = candidates.filter(pk__gt=min(pk for pk in after if pk))
        events = list(candidates.order_by("created_at", "id")[:CATCH_UP_LIMIT])
        keys: dict[tuple[str, ...], list[str | None]] = {}
        for wait in group:
            paths = tuple(sorted(wait.match))
            if paths not in keys:
                keys[paths] = [key_of(item, paths) for item in events]
            for item, key in zip(events, keys[paths], strict=True):
                if key == wait.match_key and item.created_at >= wait.created_at:
                    found[wait.pk] = item
                    break
        if len(events) == CATCH_UP_LIMIT and len(group) > 1:
            # The batch's window was full: each wait not matched looks on its own, from
            # its own start, as far as the limit lets one wait look.
            for wait in group:
                if wait.pk not in found:
                    alone = early_event(wait)
                    if alone is not None:
                        found[wait.pk] = alone
    return found

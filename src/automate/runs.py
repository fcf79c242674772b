"""Which runs an outbox item starts: workflow matching and run creation, in one place.

Data flow: an outbox item (a webhook, ``emit``, an API call, ``run_workflow``) -> the enabled
workflows whose :class:`Trigger` matches its connection key and event type -> one
:class:`~automate.models.WorkflowRun` per (item, workflow), pinned to the workflow's
version of that moment. Runs are made once: the table is unique on (item, workflow), so a
worker that claims an item again (after a crash, a retry, a replay) finds its runs
instead of making new ones.

:mod:`automate.services` uses it for a manual run (the run is made with its item, since
a manual item matches no trigger); :mod:`automate.dispatch` uses it before handing the
runs to :mod:`automate.runner`.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.sql import Query

from automate import compiled
from automate.flow import failure, matching, parking
from automate.models import (
    RESUME_CONNECTOR_KEY,
    StepRun,
    Workflow,
    WorkflowRun,
    event_source,
    trigger_key,
)
from automate_core.outbox.models import OutboxItem


@dataclass(frozen=True)
class Trigger:
    """Which events start a workflow: a connection key and event-type patterns."""

    connector: str
    events: tuple[str, ...] = ()

    def matches(self, connector_key: str, event_type: str) -> bool:
        if connector_key != self.connector:
            return False
        return not self.events or any(fnmatch.fnmatchcase(event_type, p) for p in self.events)


def matching_workflows(connector_key: str, event_type: str) -> list[Workflow]:
    """Enabled workflows whose trigger matches an event, oldest first."""
    # Every batch reads them: compiled once per connection (automate.compiled).
    return [
        wf
        for wf in compiled.fetch("trigger_candidates", Workflow, _candidates, [connector_key])
        if Trigger(wf.trigger_connector, tuple(wf.trigger_event_types)).matches(
            connector_key, event_type
        )
    ]


def _candidates(connector_key: str) -> QuerySet[Workflow]:
    found = Workflow.objects.filter(enabled=True, trigger_connector=connector_key)
    return found.order_by("id")


def event_context(item: OutboxItem) -> dict[str, Any]:
    """The ``event`` a template sees, taken from an outbox item.

    ``connector`` is the connection key (an API-posted event's too); ``source`` says where
    it came from (:func:`automate.models.event_source`): ``"api"``, ``"manual"``,
    ``"schedule"``, ``"emit"`` or ``"webhook"``. A workflow that must act on signed
    deliveries only can check it.
    """
    return {
        "id": item.external_id,
        "outbox_id": item.pk,
        "type": item.event_type,
        "connector": trigger_key(item.connector_key),
        "source": event_source(item),
        "payload": item.payload,
        "received_at": item.created_at.isoformat() if item.created_at else None,
    }


def new_run(workflow: Workflow, item: OutboxItem) -> WorkflowRun:
    """An unsaved ``pending`` run of ``workflow``'s current version for ``item``."""
    return WorkflowRun(
        workflow=workflow,
        workflow_version=workflow.version,
        outbox_item=item,
        event=event_context(item),
        trace_id=item.trace_id,
    )


def ensure_runs(item: OutboxItem) -> list[WorkflowRun]:
    """The item's runs: those already made, plus one per matching workflow (idempotent)."""
    return ensure_runs_for([item])[item.pk]


def ensure_runs_for(items: Sequence[OutboxItem]) -> dict[int, list[WorkflowRun]]:
    """:func:`ensure_runs` for a batch, in a fixed number of queries: the existing runs,
    the matching workflows (once per connection key and event type) and one bulk INSERT.

    Each run comes with its step history prefetched, and runs of one workflow share one
    ``Workflow`` instance, so executing them reads nothing more before their first step.
    """
    workflows: dict[int, Workflow] = {}  # one instance per workflow, shared by its runs
    resumes = [item for item in items if item.connector_key == RESUME_CONNECTOR_KEY]
    items = [item for item in items if item.connector_key != RESUME_CONNECTOR_KEY]
    # wait_for_event: the events take over the waiting runs they match, which they then
    # carry (resume_item) and are found with the runs they were made for.
    woken = matching.wake_waiters(items)
    # Items read with HAS_RUNS that had none have no run to find but those they took
    # over just now, which came with their waits (unless a takeover missed one).
    unread = {i.pk for i in items if getattr(i, HAS_RUNS, True) is False}
    if woken.runs is None:
        unread = set()
    by_item, resumed = _existing_runs(items, workflows, skip=unread)
    for pk, taken in (woken.runs or {}).items():
        if pk in unread:
            for run in taken:
                run.workflow = workflows.setdefault(run.workflow_id, run.workflow)  # type: ignore[attr-defined]
            resumed[pk] = taken
    new = _missing_runs(items, by_item, workflows)
    fresh: set[int] = set()  # runs this call inserted: they have no step history to read
    if new:
        made = _create_runs(new)
        if made is new:
            fresh = {run.pk for run in made}
        for run in made:
            by_item[run.outbox_item_id][run.workflow_id] = run  # type: ignore[index]
    runs = {pk: sorted(found.values(), key=lambda r: r.pk) for pk, found in by_item.items()}
    for pk, found in resumed.items():
        for run in sorted(found, key=lambda r: r.pk):
            if run.pk in woken.waits:
                run.resumed_wait = woken.waits[run.pk]  # type: ignore[attr-defined]
            runs[pk].append(run)
    alerts = [item for item in resumes if failure.is_alert(item)]
    if alerts:  # items that run a dead-lettered run's on_failure steps (automate.flow.failure)
        resumes = [item for item in resumes if not failure.is_alert(item)]
        runs.update(failure.alerted_runs(alerts))
    if resumes:  # items that resume parked runs (automate.flow.parking)
        runs.update(parking.resumed_runs(resumes))
    every = [run for found in runs.values() for run in found]
    for run in every:
        if run.pk in fresh:
            run._prefetched_objects_cache = {"step_runs": _no_history()}  # type: ignore[attr-defined]
    _read_histories([run for run in every if run.pk not in fresh and not _has_history(run)])
    return runs


def _read_histories(runs: Sequence[WorkflowRun]) -> None:
    """Prefetch the step history of ``runs`` (``run.step_runs.all()`` then reads no
    table), in one SELECT, as ``prefetch_related_objects`` would: each record knows its
    run, and every run has a history, empty or not.

    Every batch of resumed runs sends it: compiled once per connection and number of runs
    (:mod:`automate.compiled`), not built and compiled by the ORM each batch."""
    ids = list(dict.fromkeys(run.pk for run in runs))
    if not ids:
        return
    records: dict[int, list[StepRun]] = {pk: [] for pk in ids}
    for record in compiled.fetch("step_history", StepRun, _history, ids):
        records[record.run_id].append(record)  # type: ignore[attr-defined]
    field = StepRun._meta.get_field("run")
    for run in runs:
        found = records[run.pk]
        for record in found:
            field.set_cached_value(record, run)  # type: ignore[union-attr]
        cache = getattr(run, "_prefetched_objects_cache", None)
        if cache is None:
            cache = run._prefetched_objects_cache = {}  # type: ignore[attr-defined]
        # The run's own query, as prefetch_related_objects leaves it: a later
        # ``run.step_runs.filter(...)`` reads the table, not an empty query.
        cache["step_runs"] = _history_of(found, run.pk)


def _has_history(run: WorkflowRun) -> bool:
    """Whether ``run``'s history is prefetched already (``prefetch_related_objects``
    reads none again)."""
    return "step_runs" in getattr(run, "_prefetched_objects_cache", {})


def _history(*run_ids: int) -> QuerySet[StepRun]:
    return StepRun.objects.filter(run__in=run_ids).order_by("id")


def _history_of(records: list[StepRun], run_pk: int | None = None) -> QuerySet[StepRun]:
    """``records`` as a prefetched step history: iterating it compiles no query.

    With ``run_pk``, a further ``filter()`` starts from that run's records, as on the
    queryset a run's related manager hands ``prefetch_related_objects``: its filter
    deferred, as Django's related managers defer theirs, until a further ``filter()``
    needs it, so a batch of resumed runs builds none (a built one cost ~80 µs per run).
    Without it, the history of a new run shares one empty query (what
    ``StepRun.objects.none()`` gives, without building one per run), which a QuerySet
    never changes in place (``filter()``, ``order_by()``... clone it first)."""
    if run_pk is None:
        found = StepRun.objects._queryset_class(model=StepRun, query=_empty_history())  # type: ignore[attr-defined]
    else:
        found = StepRun.objects.all()
        found._defer_next_filter = True  # type: ignore[attr-defined]
        found = found.filter(run=run_pk)
    found._result_cache = records
    found._prefetch_done = True  # type: ignore[attr-defined]
    return found


@functools.cache
def _empty_history() -> Query:
    return StepRun.objects.none().query


def _no_history() -> QuerySet[StepRun]:
    """An empty step history, read as a prefetched one: iterating it compiles no query."""
    return _history_of([])


#: The attribute :func:`has_runs` annotates an item with.
HAS_RUNS = "has_runs"


def has_runs() -> dict[str, Q]:
    """``.annotate(**has_runs())``: whether each item has runs (made for it, or resumed by
    it), read with the items themselves. The claimed batch's SELECT of its runs then
    leaves out the items that had none, and is not sent when no item had any: new
    events, most of a pipeline's, need one statement fewer per batch.

    Runs of an item are made only while it is leased, or with the item itself (manual
    runs, schedule ticks, child workflows); another worker's, made meanwhile under a
    lease that ran out, meets the runs' unique constraint (:func:`_create_runs`)."""
    made = WorkflowRun.objects.filter(outbox_item=OuterRef("pk"))
    resumed = WorkflowRun.objects.filter(resume_item=OuterRef("pk"))
    return {HAS_RUNS: Exists(made) | Exists(resumed)}


def _existing_runs(
    items: Sequence[OutboxItem], workflows: dict[int, Workflow], skip: set[int] | None = None
) -> tuple[dict[int, dict[int, WorkflowRun]], dict[int, list[WorkflowRun]]]:
    """The runs already made for ``items``, by item id and workflow id; and, in the same
    SELECT, the parked runs that ``items`` (events a ``wait_for_event`` matched) resumed,
    by item id. Items in ``skip`` are known to have none."""
    ids = [i.pk for i in items]
    by_item: dict[int, dict[int, WorkflowRun]] = {pk: {} for pk in ids}
    resumed: dict[int, list[WorkflowRun]] = {}
    read = [pk for pk in ids if pk not in (skip or ())]
    if not read:
        return by_item, resumed
    existing = WorkflowRun.objects.filter(Q(outbox_item__in=read) | Q(resume_item__in=read))
    for run in existing.select_related("workflow"):
        run.workflow = workflows.setdefault(run.workflow_id, run.workflow)
        if run.outbox_item_id in by_item:  # type: ignore[attr-defined]
            by_item[run.outbox_item_id][run.workflow_id] = run  # type: ignore[index]
        if run.resume_item_id in by_item:  # type: ignore[attr-defined]
            resumed.setdefault(run.resume_item_id, []).append(run)  # type: ignore[attr-defined]
    return by_item, resumed


def _missing_runs(
    items: Sequence[OutboxItem],
    by_item: dict[int, dict[int, WorkflowRun]],
    workflows: dict[int, Workflow],
) -> list[WorkflowRun]:
    """Unsaved runs of the matching workflows that ``items`` have no run of yet (added to
    ``by_item`` too). A manual item's run was made with it, and so was a schedule tick's:
    their keys (``_manual``, ``_schedule``) start with "_", which no connection key does,
    so they match no trigger."""
    matches: dict[tuple[str, str], list[Workflow]] = {}
    new: list[WorkflowRun] = []
    for item in items:
        if item.connector_key.startswith("_"):
            continue
        kind = (trigger_key(item.connector_key), item.event_type)
        if kind not in matches:
            matches[kind] = matching_workflows(*kind)
        for workflow in matches[kind]:
            if workflow.pk not in by_item[item.pk]:
                run = new_run(workflows.setdefault(workflow.pk, workflow), item)
                by_item[item.pk][workflow.pk] = run
                new.append(run)
    return new


def _create_runs(runs: list[WorkflowRun]) -> list[WorkflowRun]:
    """INSERT the runs at once; if another worker made some first (it held an item before
    us), one by one, taking its row where there is one."""
    try:
        if not _insert_at_once(runs):
            with transaction.atomic():
                WorkflowRun.objects.bulk_create(runs)
    except IntegrityError:
        return [_create_or_get(run) for run in runs]
    if any(run.pk is None for run in runs):  # a backend that cannot return bulk ids
        return [_create_or_get(run) for run in runs]
    return runs


def _insert_at_once(runs: list[WorkflowRun]) -> bool:
    """INSERT the runs as one autocommitted statement, ``RETURNING`` their ids; False when
    that is not possible here (in a transaction, where a failed INSERT must roll back to a
    savepoint; more values than one statement takes; a backend that cannot return the
    ids), and then nothing was sent.

    ``bulk_create`` wraps its INSERT in a transaction of its own: BEGIN and COMMIT are
    two round trips more for every claimed batch. A single statement is atomic without
    them, and a conflict (another worker made a run first) leaves nothing to undo."""
    alias = router.db_for_write(WorkflowRun)
    db = connections[alias]
    meta = WorkflowRun._meta
    fields = [f for f in meta.concrete_fields if f is not meta.auto_field and not f.generated]
    limit = db.features.max_query_params
    if db.in_atomic_block or not db.get_autocommit():
        return False
    if not db.features.can_return_rows_from_bulk_insert:
        return False
    if limit is not None and len(fields) * len(runs) > limit:
        return False
    for run in runs:
        run._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
    returning = meta.db_returning_fields
    rows = WorkflowRun._base_manager.using(alias)._insert(  # type: ignore[attr-defined]
        runs, fields=fields, returning_fields=returning, using=alias
    )
    for run, row in zip(runs, rows, strict=True):
        for field, value in zip(returning, row, strict=True):
            setattr(run, field.attname, value)
        run._state.adding, run._state.db = False, alias
    return True


def _create_or_get(run: WorkflowRun) -> WorkflowRun:
    try:
        with transaction.atomic():
            run.pk = None
            run.save(force_insert=True)
    except IntegrityError:
        found = WorkflowRun.objects.get(outbox_item=run.outbox_item, workflow=run.workflow)
        found.workflow = run.workflow
        return found
    return run

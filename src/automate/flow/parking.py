"""Parked runs: a run that waits (``delay``, ``wait_for_event``, a child workflow) holds
no worker; an outbox item resumes it.

Parking (in the pass's journal, so in the transaction that settles the item that carried
the run): the waiting step's record is ``waiting``, a :class:`RunWait` row says for what,
the run is ``waiting``, and a timer, an outbox item of connector ``_resume`` whose
``available_at`` is the deadline, is written when there is a deadline. The item that
carried the run is then done with it.

Resuming: an item of connector ``_resume`` is either a wait's timer or the item that
ended it (a child run that ended: ``resolved_by``); a matched event needs neither, it
takes the run over itself when it wins the wait (:func:`automate.flow.matching.resolve_all`)
and resumes it in the pass that claimed it. A worker that claims
one takes the run over with two conditional UPDATEs, committed together before the run
goes on: the wait ``waiting`` -> resolved by this item, the run ``waiting`` -> ``running``
with ``resume_item`` = this item (a wait resolved by this item whose run still waits, as
an older version could leave it after a crash, is taken over when the item is claimed
again). A claimed batch does both for all its items at once. Only one item can
win each, so a run resumes once however many timers, events and workers race; the
winning item carries the run from then on (its retries, its lease, its dead letter), and
a crash after the takeover resumes from the same item. Claims, leases and ``SKIP LOCKED``
work as for any event.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from automate import compiled
from automate.flow import bulk, matching
from automate.flow.models import RunWait, WaitKind, WaitStatus
from automate.models import (
    FINISHED_RUN_STATUSES,
    MANUAL_CONNECTOR_KEY,
    RESUME_CONNECTOR_KEY,
    RunStatus,
    StepRun,
    Workflow,
    WorkflowRun,
    WorkflowStep,
)
from automate.outcomes import RunOutcome
from automate_core.outbox.models import OutboxItem, OutboxStatus
from automate_core.providers.errors import AutomateError, ErrorCodes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from automate.flow.execution import Execution as RunExecution

__all__ = [
    "add_wait",
    "cancel_run",
    "child_ended",
    "resume",
    "resumed_runs",
    "start_child",
    "wake_orphaned_parents",
    "wake_parent",
]

CANCELLED_ERROR = {"code": "cancelled", "message": "cancelled with cancel_run"}

#: How a timer resolves the wait it is the timer of.
_TIMER_RESOLVES = {
    WaitKind.DELAY: WaitStatus.DUE,
    WaitKind.EVENT: WaitStatus.TIMED_OUT,
    WaitKind.CHILD: WaitStatus.TIMED_OUT,
}


def add_wait(
    ex: RunExecution,
    record: StepRun,
    *,
    kind: str,
    due_at: datetime | None = None,
    timer_at: datetime | None = None,
    **fields: Any,
) -> RunWait:
    """Journal the wait of a parked step and its timer, due at ``timer_at`` (by default
    the deadline; none without either)."""
    run = ex.run
    timer_at = timer_at or due_at
    timer = None
    if timer_at is not None:
        timer = _timer(run, kind, timer_at)
        ex.journal.add(timer)
    fields.setdefault("created_at", timezone.now())
    wait = RunWait(run=run, step_run=record, kind=kind, due_at=due_at, timer=timer, **fields)
    ex.journal.add(wait)
    return wait


def resume(
    ex: RunExecution, step: WorkflowStep, record: StepRun, scope: dict[str, Any]
) -> RunOutcome | None:
    """Continue after the waiting ``record``: finish it with what ended its wait."""
    wait = getattr(ex.run, "resumed_wait", None)  # read by the takeover (resumed_runs)
    if wait is None or wait.step_run_id != record.pk:  # type: ignore[attr-defined]
        wait = RunWait.objects.filter(step_run=record).order_by("-id").first()
    if wait is None or wait.status == WaitStatus.WAITING:
        return ex.park()  # not resumed: nothing to do until its item comes
    if wait.status == WaitStatus.CANCELLED:
        return ex.cancel()
    output: dict[str, Any]
    if wait.status == WaitStatus.DUE:
        output = {"until": wait.due_at.isoformat() if wait.due_at else None, "waited": True}
    elif wait.status == WaitStatus.MATCHED:
        output = {"event": wait.event}
    elif wait.status == WaitStatus.TIMED_OUT:
        if step.config.get("on_timeout") == "fail":
            error = AutomateError(
                ErrorCodes.TIMEOUT,
                f"no matching event within {step.config.get('timeout_seconds')} s",
                retryable=False,
            )
            return ex.fail_now(step, record, error)
        output = {"timed_out": True}
    else:  # CHILD_ENDED
        output = child_output(wait.child_run)
    ex.complete(step, record, output, scope)
    return None


def child_output(child: WorkflowRun | None) -> dict[str, Any]:
    """What a ``workflow`` step that waited gives: the child's status and step outputs."""
    if child is None:
        return {"status": None, "steps": {}}
    steps: dict[str, Any] = {}
    for sr in child.step_runs.select_related("step").filter(path="").order_by("id"):
        if sr.step.parent_id is None and sr.status == "succeeded":  # type: ignore[attr-defined]
            steps[sr.step.name] = sr.output
    return {"status": child.status, "steps": steps}


# -- Child workflows -----------------------------------------------------------------------


def start_child(
    ex: RunExecution, workflow: Workflow, payload: dict[str, Any], key: str
) -> WorkflowRun:
    """Journal a child run of ``workflow`` and its outbox item: they commit with the
    parent's record (and its wait), so the child cannot end before its parent waits."""
    parent = ex.run
    item = OutboxItem(
        connector_key=MANUAL_CONNECTOR_KEY,
        event_type="workflow.child",
        external_id=key,
        payload=payload,
        trace_id=parent.trace_id,
    )
    ex.journal.add(item)
    child = WorkflowRun(
        workflow=workflow,
        workflow_version=workflow.version,
        outbox_item=item,
        trace_id=parent.trace_id,
        parent_run=parent,
        event={
            "id": key,
            "type": "workflow.child",
            "connector": MANUAL_CONNECTOR_KEY,
            "payload": payload,
            "received_at": item.created_at.isoformat(),
            "parent_run": parent.pk,
        },
    )
    ex.journal.add(child)
    return child


def child_ended(ex: RunExecution) -> None:
    """The run ``ex`` executes has ended: wake its parent if the parent waits for it."""
    run = ex.run
    if run.parent_run_id is None:  # type: ignore[attr-defined]
        return
    for wait_id in RunWait.objects.filter(child_run=run, status=WaitStatus.WAITING).values_list(
        "pk", flat=True
    ):
        ex.journal.add(
            OutboxItem(
                connector_key=RESUME_CONNECTOR_KEY,
                event_type="child.ended",
                payload={"child_ended": wait_id},
                trace_id=run.trace_id,
            )
        )


def wake_parent(run: WorkflowRun) -> None:
    """:func:`child_ended` for a run ended outside a pass (cancelled while not held)."""
    for wait_id in RunWait.objects.filter(child_run=run, status=WaitStatus.WAITING).values_list(
        "pk", flat=True
    ):
        OutboxItem.objects.create(
            connector_key=RESUME_CONNECTOR_KEY,
            event_type="child.ended",
            payload={"child_ended": wait_id},
            trace_id=run.trace_id,
        )


def wake_orphaned_parents() -> int:
    """Wake the parents waiting for children that ended outside a pass (dead-lettered by
    the outbox, when their event ran out of attempts); returns how many were woken."""
    waits = RunWait.objects.filter(
        kind=WaitKind.CHILD,
        status=WaitStatus.WAITING,
        child_run__status__in=FINISHED_RUN_STATUSES,
    ).select_related("child_run")
    woken = 0
    for wait in waits:
        if wait.child_run is not None:
            wake_parent(wait.child_run)
            woken += 1
    return woken


# -- Resuming ------------------------------------------------------------------------------


def resumed_runs(items: Sequence[OutboxItem]) -> dict[int, list[WorkflowRun]]:
    """The run each ``_resume`` item resumes: ``[run]`` when the item won the run, ``[]``
    when another item resumed it first or it was cancelled. Commits the takeover.

    A batch costs a fixed number of statements, however many runs it resumes and
    whatever their items are (due timers, a ``wait_for_event``'s first look or its
    timeout, a child's end), all in one transaction: one SELECT that locks the items'
    waits and reads their runs and workflows with them (:func:`_lock_waits`), the look
    for events that came meanwhile (:func:`matching.early_events`, one SELECT per
    connection and event type), the UPDATEs that resolve or re-arm the waits
    (:func:`_settle_waits`) and one UPDATE that takes the won runs over
    (:func:`_take_over`). Each resumed run carries its resolved wait, so the pass
    that resumes it reads it again from no table.

    Resolving a wait and taking its run over commit together. That is safe because the
    two only ever happen in that order and the winner is decided by the wait: an item
    that resolves a wait is the only one that may take its run, and a crash before the
    commit leaves both the wait and the run waiting, so the item, claimed again, (or a
    reply, or a cancel) finds the wait as it was. Rows left by a crash between two
    separate commits (the wait resolved by this item, the run still waiting) are still
    taken over: the run is taken whenever its wait is resolved by this item.
    """
    found: dict[int, list[WorkflowRun]] = {item.pk: [] for item in items}
    if not items:
        return found
    said_ended = _said_ended(items)
    with transaction.atomic():
        waits, by_id = _lock_waits([item.pk for item in items], said_ended)
        won = _settle_waits(items, waits, by_id, said_ended)
        taken = _take_over(won)
    for run_id, (pk, wait) in won.items():
        run = taken.get(run_id)
        if run is not None and run.resume_item_id == pk:  # type: ignore[attr-defined]
            run.resumed_wait = wait  # type: ignore[attr-defined]
            found[pk] = [run]
    return found


def _said_ended(items: Sequence[OutboxItem]) -> dict[int, int]:
    """Wait id -> the first of ``items`` that says the wait's child ended."""
    said_ended: dict[int, int] = {}
    for item in items:
        wait_id = _child_ended(item)
        if wait_id is not None:
            said_ended.setdefault(wait_id, item.pk)
    return said_ended


def _lock_waits(
    ids: list[int], said_ended: dict[int, int]
) -> tuple[dict[int, RunWait], dict[int, RunWait]]:
    """Lock, in one SELECT, the waits the items ``ids`` may resolve (by their timer, by
    having resolved them already, or by saying their child ended) and read their runs and
    workflows with them. Returns the waits by the item that may resolve each (its timer's
    or its resolver's), and every wait read by its id."""
    # Locked in id order, waits before runs, as matching.resolve_all and cancel_run lock
    # them; the runs are read, not locked: only the holder of a run's wait changes a
    # waiting run (the takeover's UPDATE is conditional all the same).
    # Every batch of timers sends it: compiled once per connection and shape (the number
    # of items and of ended children; automate.compiled).
    split = (len(ids), len(said_ended))
    read = compiled.fetch(
        ("lock_waits", split),
        RunWait,
        lambda *values: _waits_of(split, values),
        [*ids, *ids, *said_ended],
        for_write=True,
    )
    items = set(ids)
    workflows: dict[int, Workflow] = {}  # one instance per workflow, shared by its runs
    waits: dict[int, RunWait] = {}
    by_id: dict[int, RunWait] = {}
    for wait in read:
        wait.run.workflow = workflows.setdefault(wait.run.workflow_id, wait.run.workflow)  # type: ignore[attr-defined]
        by_id[wait.pk] = wait
        for pk in (wait.resolved_by_id, wait.timer_id):  # type: ignore[attr-defined]
            if pk in items:
                waits.setdefault(pk, wait)
    return waits, by_id


def _waits_of(split: tuple[int, int], values: Sequence[int]) -> QuerySet[RunWait]:
    """The waits of :func:`_lock_waits`, locked: ``values`` are the ``split[0]`` item ids
    twice (as timers, then as resolvers), then ``split[1]`` wait ids."""
    n, ended = split
    timers, resolvers, waits = values[:n], values[n : 2 * n], values[2 * n : 2 * n + ended]
    return (
        RunWait.objects.select_for_update(of=("self",))
        .select_related("run__workflow")
        .filter(Q(timer__in=timers) | Q(resolved_by__in=resolvers) | Q(pk__in=waits))
        .order_by("id")
    )


def _settle_waits(
    items: Sequence[OutboxItem],
    waits: dict[int, RunWait],
    by_id: dict[int, RunWait],
    said_ended: dict[int, int],
) -> dict[int, tuple[int, RunWait]]:
    """Resolve or re-arm the locked waits still waiting on the items' timers or children
    (:func:`_settle_timers`), and return the runs the items won: run id -> the item that
    resolved its wait, and the wait as it is now. Updates ``by_id`` in place."""
    timers = {
        pk: wait
        for pk, wait in waits.items()
        if wait.status == WaitStatus.WAITING and wait.timer_id == pk  # type: ignore[attr-defined]
    }
    ended = {
        wait_id: pk
        for wait_id, pk in said_ended.items()
        if pk not in waits and wait_id in by_id and by_id[wait_id].status == WaitStatus.WAITING
    }
    resolved, exact = _settle_timers(items, timers, ended, locked=True)
    _apply_settled(resolved, exact, by_id)
    current = {pk: by_id[wait.pk] for pk, wait in waits.items()}
    for wait_id, pk in ended.items():
        current[pk] = by_id[wait_id]
    return {
        wait.run_id: (pk, wait)  # type: ignore[attr-defined]
        for pk, wait in current.items()
        if wait.resolved_by_id == pk  # type: ignore[attr-defined]
    }


def _apply_settled(
    resolved: dict[int, dict[str, Any]], exact: bool, by_id: dict[int, RunWait]
) -> None:
    """Bring the waits of ``by_id`` that :func:`_settle_timers` resolved up to date: from
    the values it set when every UPDATE hit its rows (``exact``), else read again."""
    if resolved and not exact:
        # A wait changed between the read and its UPDATE (SQLite has no row locks): what
        # the rows say now decides.
        for fresh in RunWait.objects.in_bulk(list(resolved)).values():
            fresh.run = by_id[fresh.pk].run
            by_id[fresh.pk] = fresh
    elif resolved:
        for wait_id, values in resolved.items():
            for name, value in values.items():
                setattr(by_id[wait_id], name, value)


def _take_over(won: dict[int, tuple[int, RunWait]]) -> dict[int, WorkflowRun]:
    """Hand each run of ``won`` (run id -> the item that won its wait, and the wait) to
    that item if it still waits; return the runs as they are now, by id. One UPDATE,
    conditional on the run still waiting; the runs come from the waits' read, and are
    read again only when the UPDATE missed one it aimed at (cancelled meanwhile)."""
    runs = {run_id: wait.run for run_id, (_, wait) in won.items()}
    todo = {
        run_id: [pk] for run_id, (pk, _) in won.items() if runs[run_id].status == RunStatus.WAITING
    }
    moved = bulk.update_each(
        WorkflowRun,
        todo,
        ["resume_item"],
        same={"status": RunStatus.RUNNING},
        only_if={"status": RunStatus.WAITING},
    )
    if moved == len(todo):
        for run_id, [pk] in todo.items():
            runs[run_id].status, runs[run_id].resume_item_id = RunStatus.RUNNING, pk  # type: ignore[attr-defined]
        return runs
    fresh = WorkflowRun.objects.in_bulk(list(runs))
    for run_id, run in fresh.items():
        run.workflow = runs[run_id].workflow
    return fresh


def _child_ended(item: OutboxItem) -> int | None:
    """The wait whose child run ended, when ``item`` says so."""
    payload = item.payload if isinstance(item.payload, dict) else {}
    wait_id = payload.get("child_ended")
    return wait_id if isinstance(wait_id, int) else None


def _settle_timers(
    items: Sequence[OutboxItem],
    timers: dict[int, RunWait],
    ended: dict[int, int],
    *,
    locked: bool = False,
) -> tuple[dict[int, dict[str, Any]], bool]:
    """Resolve or re-arm, together, the waits whose timers are among ``items`` (by item
    id) and those whose child ended (``ended``: wait id -> item id). Returns what each
    wait resolved here was set to (by wait id: its fields' new values), and whether every
    UPDATE changed every row it aimed at; if not, some wait was won meanwhile and only
    its row says by whom.

    Every UPDATE is conditional (the wait still ``waiting``, a re-armed wait still on
    this timer), so a reply, a cancel or another holder of the same item that got there
    first keeps what it won. A ``wait_for_event`` looks for events that came meanwhile
    first (one look for the batch); without one, it times out when due and is otherwise
    re-armed on its timeout timer. One transaction (the caller's, when it has one): the
    waits are locked in id order first, as :func:`matching.resolve_all` and
    :func:`cancel_run` lock them, unless the caller has locked them (``locked``)."""
    now = timezone.now()
    early = matching.early_events([w for w in timers.values() if w.kind == WaitKind.EVENT])
    by_status: dict[str, list[int]] = {}  # waits resolved by their own timer
    looks: dict[int, list[Any]] = {}  # wait id -> [the event, the timer that found it]
    rearm: dict[int, RunWait] = {}  # timer id -> wait
    resolved: dict[int, dict[str, Any]] = {}
    for pk, wait in timers.items():
        event = early.get(wait.pk)
        if event is not None:
            looks[wait.pk] = [{"type": event.event_type, "payload": event.payload}, pk]
            resolved[wait.pk] = {"status": WaitStatus.MATCHED, "event": looks[wait.pk][0]}
        elif wait.kind == WaitKind.EVENT and (wait.due_at is None or now < wait.due_at):
            rearm[pk] = wait
        else:
            due = _TIMER_RESOLVES[WaitKind(wait.kind)]
            by_status.setdefault(due, []).append(wait.pk)
            resolved[wait.pk] = {"status": due}
        if wait.pk in resolved:
            resolved[wait.pk].update(resolved_by_id=pk, resolved_at=now)
    for wait_id, pk in ended.items():
        resolved[wait_id] = {
            "status": WaitStatus.CHILD_ENDED,
            "resolved_by_id": pk,
            "resolved_at": now,
        }
    if not (resolved or rearm):
        return {}, True
    changed = 0
    # Inside the caller's transaction, no savepoint: a failure here fails it all.
    with transaction.atomic(savepoint=False):
        if not locked:
            ids = [*looks, *ended, *(w.pk for w in timers.values())]
            list(  # locks only: the UPDATEs below decide
                RunWait.objects.select_for_update()
                .filter(pk__in=ids, status=WaitStatus.WAITING)
                .order_by("id")
                .values_list("pk", flat=True)
            )
        for status, wait_ids in by_status.items():
            changed += RunWait.objects.filter(pk__in=wait_ids, status=WaitStatus.WAITING).update(
                status=status, resolved_by=F("timer"), resolved_at=now
            )
        changed += bulk.update_each(
            RunWait,
            looks,
            ["event", "resolved_by"],
            same={"status": WaitStatus.MATCHED, "resolved_at": now},
            only_if={"status": WaitStatus.WAITING},
        )
        changed += bulk.update_each(
            RunWait,
            {wait_id: [pk] for wait_id, pk in ended.items()},
            ["resolved_by"],
            same={"status": WaitStatus.CHILD_ENDED, "resolved_at": now},
            only_if={"status": WaitStatus.WAITING},
        )
        _rearm(items, rearm)
    return resolved, changed == len(resolved)


def _rearm(items: Sequence[OutboxItem], rearm: dict[int, RunWait]) -> None:
    """Give each wait of ``rearm`` (by the first timer it is on) its timeout timer in
    place of that first timer, or none without a timeout: one INSERT of the timers and
    one UPDATE of the waits still waiting on their first timer. A timer whose wait was
    meanwhile won (or re-armed by another holder of the same item) is deleted again, in
    the same transaction."""
    endless = [wait.pk for wait in rearm.values() if wait.due_at is None]
    if endless:
        RunWait.objects.filter(pk__in=endless, timer__in=list(rearm)).update(timer=None)
    by_pk = {item.pk: item for item in items}
    new = {
        pk: _timer_after(by_pk[pk], wait.kind, wait.due_at)
        for pk, wait in rearm.items()
        if wait.due_at is not None
    }
    if not new:
        return
    OutboxItem.objects.bulk_create(list(new.values()))
    moved = bulk.update_each(
        RunWait,
        {rearm[pk].pk: [timer.pk, pk] for pk, timer in new.items()},
        ["timer"],
        only_if={"status": WaitStatus.WAITING},
        only_if_each=["timer"],
    )
    if moved < len(new):
        kept = set(
            RunWait.objects.filter(pk__in=[rearm[pk].pk for pk in new]).values_list(
                "timer_id", flat=True
            )
        )
        OutboxItem.objects.filter(
            pk__in=[timer.pk for timer in new.values() if timer.pk not in kept]
        ).delete()


def _timer(run: WorkflowRun, kind: str, at: datetime) -> OutboxItem:
    return OutboxItem(
        connector_key=RESUME_CONNECTOR_KEY,
        event_type=f"{kind}.timer",
        payload={"run": run.pk},
        trace_id=run.trace_id,
        available_at=at,
    )


def _timer_after(first: OutboxItem, kind: str, at: datetime) -> OutboxItem:
    """A wait's timeout timer, due ``at``, made from its ``first`` timer (which names its
    run and carries its trace): the run need not be read."""
    return OutboxItem(
        connector_key=RESUME_CONNECTOR_KEY,
        event_type=f"{kind}.timer",
        payload=first.payload,
        trace_id=first.trace_id,
        available_at=at,
    )


# -- Cancelling ----------------------------------------------------------------------------


def cancel_run(run: WorkflowRun) -> WorkflowRun:
    """End ``run`` as ``cancelled``: at once when no worker holds it (pending, waiting,
    retrying), else at its next step boundary. A finished run is returned unchanged."""
    now = timezone.now()
    fields = {
        "status": RunStatus.CANCELLED,
        "finished_at": now,
        "error": CANCELLED_ERROR,
        "cancel_requested_at": now,
    }
    with transaction.atomic():
        # The wait first, as a takeover does: the two never lock in opposite orders.
        waiting = list(
            RunWait.objects.filter(run=run, status=WaitStatus.WAITING).values_list("pk", flat=True)
        )
        RunWait.objects.filter(pk__in=waiting, status=WaitStatus.WAITING).update(
            status=WaitStatus.CANCELLED, resolved_at=now
        )
        for wait_id in waiting:
            matching.retire_timer(wait_id)
        done = WorkflowRun.objects.filter(pk=run.pk, status=RunStatus.WAITING).update(**fields)
        if not done:
            carrier = WorkflowRun.objects.filter(pk=run.pk).values_list(
                "resume_item_id", "outbox_item_id"
            )
            resume_id, item_id = carrier.first() or (None, None)
            item_id = resume_id or item_id
            # An UPDATE, not a SELECT: it locks the item, so no worker claims it meanwhile.
            free = item_id is None or OutboxItem.objects.filter(pk=item_id).exclude(
                status=OutboxStatus.LEASED
            ).update(updated_at=now)
            if free:
                done = WorkflowRun.objects.filter(
                    pk=run.pk, status__in=[RunStatus.PENDING, RunStatus.RETRYING]
                ).update(**fields)
        if not done:
            WorkflowRun.objects.filter(pk=run.pk).exclude(status__in=FINISHED_RUN_STATUSES).update(
                cancel_requested_at=now
            )
    for child in WorkflowRun.objects.filter(parent_run=run).exclude(
        status__in=FINISHED_RUN_STATUSES
    ):
        cancel_run(child)
    run.refresh_from_db()
    if done and run.parent_run_id is not None:  # type: ignore[attr-defined]
        wake_parent(run)
    return run

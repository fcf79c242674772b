"""``on_failure`` steps for runs the outbox dead-lettered: an outbox item of their own.

A run that dies in a pass (a step fails for good) runs its ``on_failure`` steps in that
pass (:func:`automate.flow.blocks.run_on_failure`). A run whose event the outbox gives up
on dies outside any pass: its item's lease ran out on every attempt (a step that crashes
or stalls the worker) and :func:`automate.dispatch.sweep_dead_runs` marks it dead, or its
retries used all the item's attempts and the settlement does (:mod:`automate.batch`);
either way with the error code ``exhausted``. Its item is dead, and may be what kills the
workers, so the ``on_failure`` steps run from an *alert item* instead: connector
``_resume``, event type :data:`ALERT_EVENT`, payload ``{"on_failure": <run id>,
"replay": <the run's replay count>}``, only for runs whose workflow version has
``on_failure`` steps: in the transaction that marks the run dead (the settlement's, or
the sweep's). Its external
id is :func:`alert_key`, unique per run and replay: however many sweeps see a run die, it
gets one item.

A worker that claims an alert item reads its run (:func:`alerted_runs`) and runs only its
``on_failure`` steps (:func:`automate.runner.execute_on_failure`), never the steps that
killed it: each once (a step with a record in this replay is not run again, so a crash
in the middle repeats none), one that fails recorded and the next run. The run's row is
not written: it stays dead with its own error, and a parent waiting for it was woken
when it died. A run replayed meanwhile (no longer dead, or dead again in a later
replay), or one whose cancel was asked before it died, is not this item's to alert: the
item is done with nothing to run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef

from automate.flow.definition import ON_FAILURE
from automate.models import RESUME_CONNECTOR_KEY, RunStatus, WorkflowRun, WorkflowStep
from automate_core.outbox.models import OutboxItem

__all__ = [
    "ALERTED_BY",
    "ALERT_EVENT",
    "EXHAUSTED",
    "alert",
    "alert_key",
    "alert_swept",
    "alerted_runs",
    "is_alert",
]

#: The event type of an alert item.
ALERT_EVENT = "run.failed"

#: The error code of a run the outbox dead-lettered (its event ran out of attempts).
EXHAUSTED = "exhausted"

#: The attribute :func:`alerted_runs` sets on a run it hands out: the id of the alert
#: item whose pass runs the run's ``on_failure`` steps.
ALERTED_BY = "alerted_by"


def alert_key(run: WorkflowRun) -> str:
    """The alert item's external id: one item per run and replay."""
    return f"on_failure:{run.pk}:{run.replay_count}"


def alert(runs: Iterable[WorkflowRun]) -> int:
    """Write an alert item for each of ``runs`` (dead now, with ``on_failure`` steps), in
    the caller's transaction; one that has its item already keeps it. Returns how many
    were asked for."""
    items = [
        OutboxItem(
            connector_key=RESUME_CONNECTOR_KEY,
            event_type=ALERT_EVENT,
            external_id=alert_key(run),
            payload={"on_failure": run.pk, "replay": run.replay_count},
            trace_id=run.trace_id,
        )
        for run in runs
    ]
    if items:
        OutboxItem.objects.bulk_create(items, ignore_conflicts=True)
    return len(items)


def alert_swept(finished_at: datetime) -> int:
    """:func:`alert` the runs with ``on_failure`` steps that a sweep marked dead at
    ``finished_at`` (its own time stamp: the rows it changed). One SELECT, and one INSERT
    when some have ``on_failure`` steps."""
    has_on_failure = WorkflowStep.objects.filter(
        workflow=OuterRef("workflow"), version=OuterRef("workflow_version"), block=ON_FAILURE
    )
    swept = WorkflowRun.objects.filter(
        Exists(has_on_failure),
        status=RunStatus.DEAD,
        finished_at=finished_at,
        error__code=EXHAUSTED,
    ).only("pk", "replay_count", "trace_id")
    return alert(swept)


def is_alert(item: OutboxItem) -> bool:
    return item.connector_key == RESUME_CONNECTOR_KEY and item.event_type == ALERT_EVENT


def alerted_runs(items: Sequence[OutboxItem]) -> dict[int, list[WorkflowRun]]:
    """The run each alert item runs the ``on_failure`` steps of: ``[run]`` while the run is
    dead in the replay the item was made for (:func:`_still_alerted`), else ``[]``. One
    SELECT; each run is marked with its item (:data:`ALERTED_BY`)."""
    wanted = {item.pk: _payload(item) for item in items}
    found: dict[int, list[WorkflowRun]] = {item.pk: [] for item in items}
    ids = [run_id for run_id, _ in wanted.values() if run_id is not None]
    if not ids:
        return found
    runs = WorkflowRun.objects.select_related("workflow").in_bulk(ids)
    for pk, (run_id, replay) in wanted.items():
        run = runs.get(run_id) if run_id is not None else None
        if run is not None and _still_alerted(run, replay):
            setattr(run, ALERTED_BY, pk)
            found[pk] = [run]
    return found


def _still_alerted(run: WorkflowRun, replay: int | None) -> bool:
    """Whether the item made for ``run``'s death in replay ``replay`` is to run its
    ``on_failure`` steps: it is still that dead run, and no cancel was asked of it
    before it died (a cancel is its user's choice, never alerted)."""
    return (
        run.status == RunStatus.DEAD
        and run.replay_count == replay
        and run.cancel_requested_at is None
    )


def _payload(item: OutboxItem) -> tuple[int | None, int | None]:
    payload: Any = item.payload if isinstance(item.payload, dict) else {}
    run_id, replay = payload.get("on_failure"), payload.get("replay")
    return (
        run_id if isinstance(run_id, int) else None,
        replay if isinstance(replay, int) else None,
    )

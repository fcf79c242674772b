"""From the outbox to the runner: claim items, process them, hand them to Celery, replay.

Data flow: the outbox's ``claim()`` leases due items (:func:`claim`) -> a worker processes
them (:func:`process_batch`: :mod:`automate.batch` makes their runs, executes them with
:mod:`automate.runner` and settles the items with the outbox API). Every worker uses
this one code path: the Celery tasks of :mod:`automate.tasks` and the embedded worker of
:mod:`automate.worker` both import this module, never the reverse. In the Celery mode
:func:`dispatch_to_celery` claims a batch and sends it, by task name, once the claim has
committed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from celery import signature
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from automate import instrument
from automate.batch import FLUSH_SECONDS, ClaimedBatch
from automate.conf import settings as app_settings
from automate.flow import failure, parking
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun, carried_by
from automate.outcomes import Outcome
from automate.outgoing import delivery
from automate.schedules.fire import fire_due_when_due as fire_due_schedules
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem, OutboxStatus

__all__ = [
    "DISPATCH_TASK",
    "FLUSH_SECONDS",
    "LOST",
    "PROCESS_ITEMS_TASK",
    "RELEASED",
    "claim",
    "dispatch_to_celery",
    "execution_mode",
    "process_batch",
    "process_item",
    "replay",
    "sweep_dead_runs",
    "worker_name",
]

logger = logging.getLogger("automate.dispatch")

#: What :func:`process_item` returns besides an outbox status.
LOST, RELEASED = Outcome.LOST, Outcome.RELEASED

#: The Celery task names (:mod:`automate.tasks`). Queued messages carry them: never rename.
PROCESS_ITEMS_TASK = "automate.process_items"
DISPATCH_TASK = "automate.dispatch"


def execution_mode() -> str:
    """``"celery"`` or ``"embedded"``, from ``AUTOMATE["EXECUTION"]`` (``"auto"`` looks
    for ``settings.CELERY_BROKER_URL``)."""
    mode = app_settings.EXECUTION
    if mode == "auto":
        return "celery" if getattr(django_settings, "CELERY_BROKER_URL", None) else "embedded"
    if mode not in ("celery", "embedded"):
        raise ImproperlyConfigured(
            f'AUTOMATE["EXECUTION"] must be "auto", "celery" or "embedded", not {mode!r}'
        )
    return mode


def worker_name(suffix: str = "") -> str:
    name = f"{socket.gethostname()}:{os.getpid()}:{threading.current_thread().name}"
    return f"{name}:{suffix}" if suffix else name


def process_item(item: OutboxItem, *, should_stop: Callable[[], bool] | None = None) -> str:
    """Run every workflow for one leased item and settle it; return what became of it.

    ``should_stop`` is asked between steps: when it says yes the item is released (its
    attempt not counted) and the next worker resumes after the last finished step.
    """
    [status] = process_batch([item], should_stop=should_stop)
    return status


def process_batch(
    items: list[OutboxItem],
    *,
    should_stop: Callable[[], bool] | None = None,
    checked: bool = False,
) -> dict[str, int]:
    """Process claimed items in order; return how many ended in each state (an outbox
    status, ``lost`` or ``released``).

    The items' results are settled together, in one transaction, at the end of the batch
    and whenever an item finishes :data:`FLUSH_SECONDS` or more after the last settlement
    (see :mod:`automate.batch`). Outgoing-webhook deliveries are sent by
    :mod:`automate.outgoing.delivery` instead, before the batch's workflows.

    ``checked``: the caller has just read the items' leases (it claimed them, or selected
    them by their tokens), so the batch does not read them again before it starts; the
    leases are still confirmed before each non-idempotent call and when results settle.
    """
    deliveries = [item for item in items if delivery.is_delivery(item)]
    if not deliveries:
        return ClaimedBatch(items, should_stop, checked=checked).run()
    counts = delivery.deliver_batch(deliveries, should_stop=should_stop)
    rest = [item for item in items if not delivery.is_delivery(item)]
    # The deliveries took their time: the rest's leases are read again before they start.
    for status, n in (ClaimedBatch(rest, should_stop).run() if rest else {}).items():
        counts[status] = counts.get(status, 0) + n
    return counts


def claim(
    batch: int | None = None,
    *,
    worker: str = "",
    only: tuple[str, ...] = (),
    reclaim: bool = True,
    in_flight: queue.InFlight | None = None,
) -> list[OutboxItem]:
    """Fire the schedule ticks due now (:mod:`automate.schedules`; no query while none can
    be due), then lease due items with the outbox's ``claim()``: every poll of every worker
    and dispatcher does both. With ``reclaim`` (the default) expired leases go back to the
    queue first and the runs of the items that leaves dead are marked dead. ``in_flight``:
    the claim's own limits on what is leased at once (the dispatcher's)."""
    fire_due_schedules()
    started = time.time_ns()
    worker = worker or worker_name()
    items = queue.claim(
        batch or app_settings.WORKER_BATCH_SIZE,
        worker=worker,
        only=only,
        reclaim=reclaim,
        in_flight=in_flight,
    )
    instrument.claimed(items, started, worker)
    if reclaim:
        sweep_dead_runs()
    return items


#: A dispatcher polls many times a second (``--poll``) and an embedded worker claims a
#: batch after another, but each returns expired leases to the queue at most this often:
#: leases last minutes, and each look (with the sweep of dead runs) costs five statements.
RECLAIM_SECONDS = 1.0


class ReclaimSchedule:
    """When one poller next returns expired leases (``claim(reclaim=...)``): at its first
    poll, then at most once per :data:`RECLAIM_SECONDS`."""

    def __init__(self) -> None:
        self.next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + RECLAIM_SECONDS
        return True


#: This process's dispatcher's schedule.
_dispatcher_reclaims = ReclaimSchedule()


#: The error message of runs whose item the outbox dead-lettered outside a pass.
GAVE_UP = (
    "the outbox gave up on the event: its lease ran out (a worker crashed or stalled on it) "
    "or its processing failed, on every attempt"
)


def sweep_dead_runs() -> int:
    """Dead-letter the unfinished runs of items the outbox dead-lettered by itself (their
    lease ran out once too often), so a run never shows ``running`` for a dead event.

    One UPDATE while there is none to sweep. Then the swept runs with ``on_failure`` steps
    get their alert items (:func:`automate.flow.failure.alert_swept`, one SELECT of the
    runs this UPDATE stamped, and their INSERT) and a parent waiting for one of them is
    woken, in the UPDATE's transaction: a sweeper killed before its COMMIT leaves the runs
    unfinished for the next sweep, never dead without their alerts. (The dispatcher sweeps
    at most once a second, so its polls do not pay the BEGIN and COMMIT; an embedded
    worker sweeps at each poll, where the reclaim already costs statements of its own.)"""
    error = {"code": failure.EXHAUSTED, "message": GAVE_UP}
    carrier_dead = Q(resume_item__isnull=True, outbox_item__status=OutboxStatus.DEAD) | Q(
        resume_item__status=OutboxStatus.DEAD
    )
    now = timezone.now()
    with transaction.atomic():
        swept = WorkflowRun.objects.filter(
            carrier_dead,
            status__in=[RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RETRYING],
        ).update(status=RunStatus.DEAD, finished_at=now, error=error)
        if swept:
            failure.alert_swept(now)
            parking.wake_orphaned_parents()  # a parent waiting for one of them
    return swept


def dispatch_to_celery(batch: int | None = None) -> int:
    """Claim one batch and hand it to Celery as one task, once the claim has committed.

    If the broker refuses the task the items are released at once, not left until their
    lease expires. No more than ``AUTOMATE["DISPATCH_MAX_IN_FLIGHT"]`` items, in
    ``AUTOMATE["DISPATCH_MAX_BATCHES_IN_FLIGHT"]`` batches, are leased at a time, so events
    queue in the outbox rather than in the broker, and while the workers are busy they
    gather there into full batches.

    The leased items and batches are counted by the claim itself (on PostgreSQL a poll is
    one statement); a full pipeline still fires due schedule ticks (their items wait in
    the outbox, like events) and still recovers crashed leases.
    """
    limits = queue.InFlight(
        items=app_settings.DISPATCH_MAX_IN_FLIGHT,
        batches=app_settings.DISPATCH_MAX_BATCHES_IN_FLIGHT,
    )
    items = claim(
        batch or app_settings.WORKER_BATCH_SIZE,
        worker=worker_name("dispatch"),
        only=("id", "lease_token"),
        reclaim=_dispatcher_reclaims.due(),
        in_flight=limits,
    )
    if not items:
        return 0
    leases = [[item.pk, item.lease_token] for item in items]

    def send() -> None:
        try:
            # By name: the task is the one automate.tasks registers (imported by the app's
            # ready()), so it is sent exactly as process_items.apply_async() would send it.
            # argsrepr: Celery would otherwise repr the whole list of leases for the
            # message's headers (for logs and monitors), a good part of a send's CPU.
            shown = f"[{len(leases)} leases, ids {leases[0][0]}..{leases[-1][0]}]"
            signature(PROCESS_ITEMS_TASK, args=[leases]).apply_async(argsrepr=shown)
        except Exception:
            logger.exception("could not send %d outbox items to Celery", len(items))
            for item in items:
                queue.release(item)

    transaction.on_commit(send)
    return len(items)


def replay(item_ids: list[int]) -> int:
    """Send dead items back to the queue; their dead runs start again with fresh budgets.

    A step left ``running`` by a lost worker is marked interrupted and is executed again:
    replay is the operator's decision that repeating it is right.
    """
    with transaction.atomic():
        runs = carried_by(item_ids).exclude(
            status__in=[RunStatus.COMPLETED, RunStatus.FILTERED, RunStatus.CANCELLED]
        )
        StepRun.objects.filter(run__in=runs, status=StepStatus.RUNNING).update(
            status=StepStatus.INTERRUPTED,
            finished_at=timezone.now(),
            error={"code": "interrupted", "message": "marked interrupted by a replay"},
        )
        for run in runs.select_for_update():
            run.status, run.error, run.finished_at = RunStatus.PENDING, None, None
            run.replay_count += 1
            run.save(update_fields=["status", "error", "finished_at", "replay_count"])
        return queue.replay(ids=item_ids)

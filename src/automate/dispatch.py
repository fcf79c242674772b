"""From the outbox to the runner: claim items, process them, settle them.

:func:`process_item` is the one code path every worker uses (the Celery tasks and the
embedded worker): it makes the item's runs, executes them with :mod:`automate.runner` and
settles the item with the outbox API (``complete``, ``fail``, ``release``). Claiming
is the outbox's own ``claim()``; in the Celery mode :func:`dispatch_to_celery` claims a
batch and sends it as one task once the claim has committed.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from automate import runner
from automate.journal import Journal
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun, WorkflowStep
from automate_core.conf import settings as automate_settings
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem, OutboxStatus
from automate_core.tracing import trace

logger = logging.getLogger("automate.dispatch")

#: What :func:`process_item` returns besides an outbox status.
LOST, RELEASED = "lost", "released"


def execution_mode() -> str:
    """``"celery"`` or ``"embedded"``, from ``AUTOMATE["EXECUTION"]`` (``"auto"`` looks
    for ``settings.CELERY_BROKER_URL``)."""
    mode = automate_settings.EXECUTION
    if mode == "auto":
        return "celery" if getattr(django_settings, "CELERY_BROKER_URL", None) else "embedded"
    if mode not in ("celery", "embedded"):
        from django.core.exceptions import ImproperlyConfigured

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
    items: list[OutboxItem], *, should_stop: Callable[[], bool] | None = None
) -> dict[str, int]:
    """Process claimed items in order; return how many ended in each state.

    The items' results are settled together, in one transaction, at the end of the batch
    and whenever an item finishes :data:`FLUSH_SECONDS` or more after the last settlement
    (see :mod:`automate.journal` for what may wait and what is committed at once).
    """
    return _Pass(items, should_stop).run()


#: Once this long has passed since the last settlement, the next item to finish settles
#: every finished one, so a long batch commits its results as it goes, not only at its end.
FLUSH_SECONDS = 1.0


@dataclass
class _Finished:
    item: OutboxItem
    result: str | list[runner.RunOutcome] | BaseException  # LOST, RELEASED, outcomes, error
    journal: Journal


class _Pass:
    """One worker's pass over a claimed batch: run each item, settle them together.

    The leases are checked once at the start, renewed for the whole batch whenever a
    third of the lease has passed, confirmed in the transaction that records a
    non-idempotent step's start, and checked under lock when results are settled: the
    results of an item that is no longer ours are dropped, never written.
    """

    clock = staticmethod(time.monotonic)

    def __init__(self, items: list[OutboxItem], should_stop: Callable[[], bool] | None) -> None:
        self.items = items
        self.should_stop = should_stop
        self.lease_seconds = int(automate_settings.OUTBOX_LEASE_SECONDS)
        self.renewed_at = self.flushed_at = self.clock()
        self.lost: set[int] = set()
        self.finished: list[_Finished] = []  # processed, not yet settled
        self.settled: set[int] = set()
        self.counts: dict[str, int] = {}
        self.steps: dict[tuple[int, int], list[WorkflowStep]] = {}

    def run(self) -> dict[str, int]:
        held = queue.held(self.items)
        self.lost = {item.pk for item in self.items if item.pk not in held}
        todo = [item for item in self.items if item.pk in held]
        runs = self._runs(todo)
        for item in todo:
            journal = Journal()
            if self.should_stop is not None and self.should_stop():
                result: str | list[runner.RunOutcome] | BaseException = RELEASED
            else:
                try:
                    with trace(item.trace_id):
                        result = self._process(item, runs[item.pk], journal)
                except Exception as exc:  # a bug or a lost database: retry the item later
                    logger.exception("processing outbox item %s failed", item.pk)
                    journal.clear()
                    result = exc
            self.finished.append(_Finished(item, result, journal))
            if self.clock() - self.flushed_at >= FLUSH_SECONDS:
                self.flush()
        self.flush()
        for pk in self.lost:
            logger.warning("lost the lease on outbox item %s", pk)
        self._count(LOST, len(self.lost))
        return self.counts

    def _runs(self, items: list[OutboxItem]) -> dict[int, list[WorkflowRun] | Exception]:
        try:
            return dict(runner.ensure_runs_for(items)) if items else {}
        except Exception:
            logger.exception("making the runs of %d outbox items at once failed", len(items))
        runs: dict[int, list[WorkflowRun] | Exception] = {}
        for item in items:
            try:
                runs[item.pk] = runner.ensure_runs(item)
            except Exception as exc:
                runs[item.pk] = exc
        return runs

    def _process(
        self,
        item: OutboxItem,
        runs: list[WorkflowRun] | Exception,
        journal: Journal,
    ) -> str | list[runner.RunOutcome] | BaseException:
        if isinstance(runs, Exception):
            return runs
        outcomes = []
        for run in runs:
            key = (run.workflow_id, run.workflow_version)
            if key not in self.steps:
                self.steps[key] = list(run.workflow.steps_of(run.workflow_version))
            outcome = runner.execute_run(
                run,
                keep_going=lambda: self._keep_going(item),
                confirm=lambda: queue.renew(item, self.lease_seconds),
                journal=journal,
                steps=self.steps[key],
            )
            if outcome.status == runner.LOST:
                self.lost.add(item.pk)
                return LOST
            if outcome.status == runner.PAUSED:
                return RELEASED
            outcomes.append(outcome)
        return outcomes

    def _keep_going(self, item: OutboxItem) -> str | None:
        if self.should_stop is not None and self.should_stop():
            return runner.PAUSED
        if self.clock() - self.renewed_at >= self.lease_seconds / 3:
            self._renew()
        return runner.LOST if item.pk in self.lost else None

    def _renew(self) -> None:
        """Extend the lease of every item of the batch not yet settled."""
        open_items = [i for i in self.items if i.pk not in self.settled and i.pk not in self.lost]
        held = queue.renew_many(open_items, self.lease_seconds)
        self.lost |= {item.pk for item in open_items if item.pk not in held}
        self.renewed_at = self.clock()

    def flush(self) -> None:
        """Write the finished items' journals and settle the items, in one transaction."""
        finished, self.finished = self.finished, []
        if not finished:
            return
        statuses: list[str] = []
        with transaction.atomic():
            held = queue.held([f.item for f in finished], lock=True)
            ours = [f for f in finished if f.item.pk in held and f.result != LOST]
            journal = Journal()
            for f in ours:
                journal.extend(f.journal)
            journal.write()
            done = [f.item for f in ours if isinstance(f.result, list) and _all_done(f.result)]
            queue.complete_many(done)
            statuses += [OutboxStatus.DONE] * len(done)
            for f in ours:
                if isinstance(f.result, list) and not _all_done(f.result):
                    statuses.append(_settle(f.item, f.result))
                elif f.result == RELEASED:
                    queue.release(f.item)
                    statuses.append(RELEASED)
                elif isinstance(f.result, BaseException):
                    statuses.append(queue.fail(f.item, f.result, retryable=True))
        self.lost |= {f.item.pk for f in finished if f.item.pk not in held}
        self.settled |= {f.item.pk for f in finished}
        for status in statuses:
            self._count(status)
        self.flushed_at = self.clock()

    def _count(self, status: str, n: int = 1) -> None:
        if n:
            self.counts[str(status)] = self.counts.get(str(status), 0) + n


def _all_done(outcomes: list[runner.RunOutcome]) -> bool:
    return all(o.status not in (runner.RETRY, runner.DEAD) for o in outcomes)


def _settle(item: OutboxItem, outcomes: list[runner.RunOutcome]) -> str:
    """Settle an item whose runs did not all finish: retry it later, or dead-letter it."""
    retries = [o for o in outcomes if o.status == runner.RETRY]
    dead = [o for o in outcomes if o.status == runner.DEAD]
    if retries:
        status = queue.fail(item, _error_of(retries[0]), retryable=True)
        if status == OutboxStatus.FAILED:
            # The failing step's own backoff, rather than the outbox's default.
            delay = min(o.retry_in or 0.0 for o in retries)
            OutboxItem.objects.filter(pk=item.pk, status=OutboxStatus.FAILED).update(
                available_at=timezone.now() + timedelta(seconds=delay)
            )
        elif status == OutboxStatus.DEAD:
            error = {"code": "exhausted", "message": "the event used all its outbox attempts"}
            item.workflow_runs.filter(status=RunStatus.RETRYING).update(
                status=RunStatus.DEAD, finished_at=timezone.now(), error=error
            )
        return status
    return queue.fail(item, _error_of(dead[0]), retryable=False)


def claim(
    batch: int | None = None, *, worker: str = "", only: tuple[str, ...] = ()
) -> list[OutboxItem]:
    """Lease due items with the outbox's ``claim()``."""
    items = queue.claim(
        batch or int(automate_settings.WORKER_BATCH_SIZE),
        worker=worker or worker_name(),
        only=only,
    )
    sweep_dead_runs()
    return items


def sweep_dead_runs() -> int:
    """Dead-letter the unfinished runs of items the outbox dead-lettered by itself (their
    lease ran out once too often), so a run never shows ``running`` for a dead event."""
    error = {"code": "exhausted", "message": "the event was dead-lettered by the outbox"}
    return WorkflowRun.objects.filter(
        status__in=[RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RETRYING],
        outbox_item__status=OutboxStatus.DEAD,
    ).update(status=RunStatus.DEAD, finished_at=timezone.now(), error=error)


def dispatch_to_celery(batch: int | None = None) -> int:
    """Claim one batch and hand it to Celery as one task, once the claim has committed.

    If the broker refuses the task the items are released at once, not left until their
    lease expires. No more than ``AUTOMATE["DISPATCH_MAX_IN_FLIGHT"]`` items are leased
    at a time, so events queue in the outbox rather than in the broker.
    """
    batch = batch or int(automate_settings.WORKER_BATCH_SIZE)
    in_flight = OutboxItem.objects.filter(status=OutboxStatus.LEASED).count()
    batch = min(batch, int(automate_settings.DISPATCH_MAX_IN_FLIGHT) - in_flight)
    if batch < 1:
        queue.reclaim_expired()  # a full pipeline must still recover crashed leases
        return 0
    items = claim(batch, worker=worker_name("dispatch"), only=("id", "lease_token"))
    if not items:
        return 0
    leases = [[item.pk, item.lease_token] for item in items]

    def send() -> None:
        from automate.tasks import process_items

        try:
            process_items.apply_async(args=[leases])
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
        runs = WorkflowRun.objects.filter(outbox_item_id__in=item_ids).exclude(
            status__in=[RunStatus.COMPLETED, RunStatus.FILTERED]
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


def _error_of(outcome: runner.RunOutcome) -> BaseException | str:
    return outcome.error if outcome.error is not None else f"run ended as {outcome.status}"

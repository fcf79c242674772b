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
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from automate import runner
from automate.models import RunStatus, StepRun, StepStatus, WorkflowRun
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


def renew_lease(item: OutboxItem, seconds: int | None = None) -> bool:
    """Extend our lease on ``item``; False when it is no longer ours (lease expired and
    another worker claimed it). Same ownership rule as the outbox: status and token."""
    seconds = seconds or int(automate_settings.OUTBOX_LEASE_SECONDS)
    return bool(
        OutboxItem.objects.filter(
            pk=item.pk, status=OutboxStatus.LEASED, lease_token=item.lease_token
        ).update(lease_expires_at=timezone.now() + timedelta(seconds=seconds))
    )


def process_item(item: OutboxItem, *, should_stop: Callable[[], bool] | None = None) -> str:
    """Run every workflow for one leased item and settle it; return what became of it.

    ``should_stop`` is asked between steps: when it says yes the item is released (its
    attempt not counted) and the next worker resumes after the last finished step.
    """
    with trace(item.trace_id):

        def keep_going() -> str | None:
            if should_stop is not None and should_stop():
                return runner.PAUSED
            return None if renew_lease(item) else runner.LOST

        outcomes = []
        for run in runner.ensure_runs(item):
            outcome = runner.execute_run(run, keep_going=keep_going)
            if outcome.status == runner.LOST:
                logger.warning("lost the lease on outbox item %s", item.pk)
                return LOST
            if outcome.status == runner.PAUSED:
                queue.release(item)
                return RELEASED
            outcomes.append(outcome)
        return _settle(item, outcomes)


def _settle(item: OutboxItem, outcomes: list[runner.RunOutcome]) -> str:
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
    if dead:
        return queue.fail(item, _error_of(dead[0]), retryable=False)
    queue.complete(item)
    return OutboxStatus.DONE


def process_batch(
    items: list[OutboxItem], *, should_stop: Callable[[], bool] | None = None
) -> dict[str, int]:
    """Process claimed items one by one; return how many ended in each state."""
    counts: dict[str, int] = {}
    for item in items:
        if should_stop is not None and should_stop():
            queue.release(item)
            status = RELEASED
        else:
            try:
                status = process_item(item, should_stop=should_stop)
            except Exception as exc:  # a bug or a lost database: retry the item later
                logger.exception("processing outbox item %s failed", item.pk)
                status = queue.fail(item, exc, retryable=True)
        counts[status] = counts.get(status, 0) + 1
    return counts


def claim(batch: int | None = None, *, worker: str = "") -> list[OutboxItem]:
    """Lease due items with the outbox's ``claim()``."""
    items = queue.claim(
        batch or int(automate_settings.WORKER_BATCH_SIZE), worker=worker or worker_name()
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
    items = claim(batch, worker=worker_name("dispatch"))
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

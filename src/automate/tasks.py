"""Celery tasks (``shared_task``: they bind to the project's Celery app).

Data flow: a message naming a task arrives -> the task calls :mod:`automate.dispatch`
(``claim``, ``process_batch``). This module depends on dispatch, never the reverse:
dispatch sends its tasks by the names defined next to it (``PROCESS_ITEMS_TASK``,
``DISPATCH_TASK``), which queued messages carry and which therefore never change.

Both are idempotent and ``acks_late``: a task redelivered after its worker died finds its
items no longer leased under the token it carries and skips them, while the items
themselves come back through their expired leases. The tasks never retry: retries live
in the outbox (see :mod:`automate.runner`).

Each task is one Django request cycle for the database connections (see
:func:`_connection_cycle`), so that a worker configured to keep its connections between
tasks (``CELERY_DB_REUSE_MAX``, see docs/workers.md) still honours ``CONN_MAX_AGE`` and
``CONN_HEALTH_CHECKS`` as the web process does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from celery import shared_task
from django.db import connections
from django.db.models import QuerySet

from automate import compiled, dispatch, retention, runs
from automate_core.outbox.models import OutboxItem, OutboxStatus


@shared_task(name=dispatch.PROCESS_ITEMS_TASK, acks_late=True, ignore_result=True)
def process_items(leases: list[list]) -> dict[str, int]:
    """Process a batch of claimed items given as ``[[id, lease_token], ...]``."""
    with _connection_cycle():
        return _process_items(leases)


def _process_items(leases: list[list]) -> dict[str, int]:
    by_id = {int(item_id): str(token) for item_id, token in leases}
    # Compiled once per connection and batch size (automate.compiled): every batch sends it.
    items = compiled.fetch("leased", OutboxItem, _leased, list(by_id))
    mine = [
        item
        for item in items
        if item.status == OutboxStatus.LEASED and item.lease_token == by_id[item.pk]
    ]
    counts = dispatch.process_batch(mine, checked=True)  # read just above
    skipped = len(by_id) - len(mine)
    if skipped:
        counts["skipped"] = skipped
    return counts


def _leased(*ids: int) -> QuerySet[OutboxItem]:
    # By primary key alone (the status is checked with the token, in Python): with
    # ``status = 'leased'`` in the WHERE clause, PostgreSQL may read the partial index of
    # leased rows instead, every entry of which a bitmap scan visits until VACUUM
    # removes those of items settled since (a busy outbox's thousands), and the plan
    # goes with the table's statistics of the moment.
    # Whether each has runs, in this SELECT: new events' batches skip reading their runs.
    found = OutboxItem.objects.filter(pk__in=ids)
    return found.annotate(**runs.has_runs()).order_by("id")


#: When this worker process's ``dispatch_batch`` tasks next return expired leases: one
#: task is sent per accepted event, and each would otherwise pay the reclaim and the sweep
#: of dead runs (five statements) on top of its claim.
_reclaims = dispatch.ReclaimSchedule()


@shared_task(name=dispatch.DISPATCH_TASK, acks_late=True, ignore_result=True)
def dispatch_batch(batch: int | None = None) -> dict[str, int]:
    """Claim a batch and process it here: what a newly accepted event triggers."""
    with _connection_cycle():
        items = dispatch.claim(
            batch, worker=dispatch.worker_name("celery"), reclaim=_reclaims.due()
        )
        return dispatch.process_batch(items, checked=True) if items else {}


@contextmanager
def _connection_cycle() -> Iterator[None]:
    """Around a task, what Django does around a request (``close_old_connections``): a
    connection past ``CONN_MAX_AGE``, left outside autocommit or broken by an error is
    closed, and with ``CONN_HEALTH_CHECKS`` the next statement checks the connection once.

    Celery's Django fixup closes every connection around every task instead, unless
    ``CELERY_DB_REUSE_MAX`` is set: then a batch's handful of statements no longer pays a
    new PostgreSQL connection (a server process, its catalog caches, the prepared
    statements of :mod:`automate.prepared`), and this keeps the request semantics that
    setting would otherwise drop. A connection inside a transaction is left alone: a task
    called in process (eagerly, or from a test) inside the caller's ``atomic`` block.
    """
    _close_old_connections()
    try:
        yield
    finally:
        _close_old_connections()


def _close_old_connections() -> None:
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


#: The name Celery beat schedules :func:`prune` by (see docs/workers.md#pruning-settled-rows).
PRUNE_TASK = "automate.prune"


@shared_task(name=PRUNE_TASK, ignore_result=True)
def prune(only: list[str] | None = None) -> dict[str, int]:
    """Delete the settled rows ``AUTOMATE["RETENTION"]`` no longer keeps
    (:func:`automate.retention.prune`); safe to run twice at once, or again after a crash."""
    with _connection_cycle():
        return retention.prune(only=only)

"""The commits a non-idempotent step needs, made one by one or handed on within a batch.

A non-idempotent step's ``running`` record is committed, in the transaction that confirms
its outbox item is still ours, before its call; its outcome is committed after the call,
before the run goes on. :class:`Commits` makes those commits at once: two commits per
non-idempotent step and event, each waiting for the disk.

:class:`HandedOn` keeps that guarantee with about half the commits, in one thread and in
order: a call's outcome is held until the next commit the worker makes anyway, the
``running`` record of its next call (of this run or of the batch's next item), or the
batch's settlement. A two-step event costs ``running(1) | outcome(1) + running(2) |
outcome(2) + the next event's running(1)`` (or ``+ the run's end and the outbox item's
settlement``): two commits, where it cost four. An outcome never waits past a call: no
step, idempotent or not, of this run or another, is called before it is committed.

On PostgreSQL, outside a transaction, a start is one autocommitted statement: it renews
the item's lease, writes the held outcome and, only if the renewal found the item still
ours, the item's pending writes and the ``running`` record; it returns whether it did.
One round trip, where BEGIN, the outcome's UPDATE, the renewal, the INSERT and COMMIT
were five. The statement is atomic and durable once it has returned, so a call still
never runs before its record is committed with the lease held, and the held outcome is
committed with it. SQLite, a caller's transaction, or writes one statement cannot carry
(a new row pointing at another new row, two writes of one row) take the transaction.

What a crash means is unchanged, and so is how much it costs: at most one call per
worker thread is between its committed ``running`` record and its committed outcome. A
record left ``running`` is never run again blindly; the next pass marks it interrupted
and dead-letters its run as an unknown outcome (:meth:`automate.runner.RunExecution.
refusal`). Committing the ``running`` records of many calls at once, before the first of
them, would save more commits, but a crash during the first call would then leave every
one of them unknown, calls that never happened included: one kill would dead-letter a
whole batch instead of one run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import signals

from automate import prepared
from automate.journal import Journal, Part, saved
from automate.models import StepRun
from automate_core.outbox.models import OutboxItem
from automate_core.outbox.queue import Renewal, completion

__all__ = ["Commits", "HandedOn"]

#: Past this many rows a start takes the transaction path (one statement per table and
#: kind of write): one WITH query per row would cost the server more than it saves.
ONE_STATEMENT_ROWS = 32


class Commits:
    """One commit per request, made at once (outside a batch)."""

    def start(self, journal: Journal, record: StepRun, confirm: Callable[[], bool] | None) -> bool:
        """Commit ``record`` (``running``) and everything ``journal`` holds if the item is
        still ours; False when it is not (or another worker is on this very attempt)."""
        started = _start(Journal(), journal, record, confirm)
        if started:
            journal.clear()
        return bool(started)

    def write(self, journal: Journal) -> None:
        """Commit what ``journal`` holds (a non-idempotent step's outcome)."""
        with transaction.atomic():
            journal.write()
        journal.clear()

    def before_call(self) -> None:
        """An idempotent step is about to be called (nothing waits here)."""


class HandedOn(Commits):
    """A batch's commits, made in order by one thread: each outcome is held (taken out of
    its item's journal) and committed with the next ``running`` record, or by
    :meth:`settle` with the batch's settlement (see the module's docstring)."""

    def __init__(self) -> None:
        #: Outcomes of calls already made, not yet committed (of one call, at most).
        self.held = Journal()

    def write(self, journal: Journal) -> None:
        self.held.extend(journal)
        journal.clear()

    def start(self, journal: Journal, record: StepRun, confirm: Callable[[], bool] | None) -> bool:
        # On any other error the outcomes stay held: the next commit, or the settlement,
        # writes them.
        started = _start(self.held, journal, record, confirm)
        if started is None:
            self.commit_held()  # nothing of the start was kept, the outcomes must be
            return False
        self.held.clear()
        if started:
            journal.clear()
        return started

    def before_call(self) -> None:
        # No call is made while an outcome waits: a crash in it would make that outcome,
        # known when the call returned, unknown.
        self.commit_held()

    def settle(self) -> None:
        """Write the held outcomes in the caller's transaction (the batch's settlement);
        :meth:`settled` once it has committed."""
        self.held.write()

    def settled(self) -> None:
        self.held.clear()

    def settle_at_once(self, journal: Journal, items: Sequence[OutboxItem]) -> bool | None:
        """Settle a batch whose items all finished as one autocommitted statement: the
        held outcomes, and, if every item is still ours, the items done and ``journal``
        written. True when all is committed, False when only the held outcomes are (the
        caller settles the items in a transaction, finding which are still ours), None
        when nothing was sent (not possible here: the caller takes the transaction)."""
        ours = _settle_in_one_statement(self.held, journal, items)
        if ours is not None:
            self.held.clear()
        return ours

    def commit_held(self) -> None:
        """Commit the held outcomes now, in a transaction of their own."""
        if self.held:
            super().write(self.held)


def _start(
    held: Journal, journal: Journal, record: StepRun, confirm: Callable[[], bool] | None
) -> bool | None:
    """Commit ``held`` (outcomes already known: whether or not the item is still ours),
    then, if ``confirm`` says the item is still ours, ``journal`` and ``record``.

    True when all is committed, False when only ``held`` is (the item is not ours), None
    when nothing is (another worker is on this very attempt: its record conflicted). The
    journals are not cleared: the caller knows which were written.
    """
    try:
        ours = _in_one_statement(held, journal, record, confirm)
        if ours is None:
            ours = _in_one_transaction(held, journal, record, confirm)
    except IntegrityError:
        _forget(held, journal, record)
        return None
    except BaseException:
        _forget(held, journal, record)
        raise
    return ours


def _in_one_transaction(
    held: Journal, journal: Journal, record: StepRun, confirm: Callable[[], bool] | None
) -> bool:
    """:func:`_start` as BEGIN, the writes and the lease's renewal, COMMIT (SQLite, a
    caller's transaction, a journal :func:`_in_one_statement` cannot send)."""
    with transaction.atomic():
        held.write()
        ours = confirm is None or confirm()
        if ours:
            journal.write()
            record.save(force_insert=True)
    return ours


def _in_one_statement(
    held: Journal, journal: Journal, record: StepRun, confirm: Callable[[], bool] | None
) -> bool | None:
    """:func:`_start` as one autocommitted PostgreSQL statement: it renews the lease and
    writes ``held``, and the rest only if the renewal found the item still ours; one round
    trip (and one commit) where the transaction took five or more. None when not possible
    here: then nothing was sent.

    A statement is atomic and, autocommitted, durable once it has returned: the call
    that follows has its ``running`` record, and the lease held when it was written.
    """
    alias = router.db_for_write(StepRun)
    db = connections[alias]
    if db.vendor != "postgresql" or db.in_atomic_block or not db.get_autocommit():
        return None
    if not (confirm is None or isinstance(confirm, Renewal)) or held.overlaps(journal):
        return None
    if router.db_for_write(OutboxItem) != alias or _has_receivers(StepRun):
        return None
    heads: list[str] = []
    params: list[Any] = []
    when = ""
    if confirm is not None:
        lease_sql, lease_params = confirm.sql(db)
        heads.append(f"lease AS ({lease_sql})")
        params += lease_params
        when = "EXISTS (SELECT FROM lease)"
    known, rest = held.parts(db), journal.parts(db, when)
    new = Journal()
    new.add(record)
    running = new.parts(db, when)
    if known is None or rest is None or running is None:
        return None
    parts: list[Part] = [*known, *rest, *running]
    if len(parts) > ONE_STATEMENT_ROWS:
        return None
    inserted: list[tuple[str, Part]] = []
    for n, part in enumerate(parts):
        heads.append(f"w{n} AS ({part.sql})")
        params += part.params
        if part.new is not None:
            inserted.append((f"w{n}", part))
    quote = db.ops.quote_name
    ids = "".join(
        f", (SELECT {quote(str(part.new._meta.pk.column))} FROM {name})"  # type: ignore[union-attr]  # noqa: S608
        for name, part in inserted
    )
    ours_sql = when or "true"
    # Names from the models' meta, quoted, and CTE names made here; values are parameters.
    sql = f"WITH {', '.join(heads)} SELECT {ours_sql}{ids}"
    # Prepared on the server once per connection and shape (automate.prepared): parsing
    # and planning this WITH query each time was most of the server's work per start.
    ours, *row = prepared.fetchone(db, sql, params)
    for (_, part), new_pk in zip(inserted, row, strict=True):
        if new_pk is not None:
            saved(part.new, new_pk, alias)  # type: ignore[arg-type]
    return bool(ours)


def _settle_in_one_statement(
    held: Journal, journal: Journal, items: Sequence[OutboxItem]
) -> bool | None:
    """:meth:`HandedOn.settle_at_once`'s statement: the outbox's :class:`Completion` of
    the items, the held outcomes (unconditional) and ``journal`` (only if the items were
    all ours) as data-modifying ``WITH`` queries, one per model and kind of write.

    One round trip where BEGIN, the items' UPDATE, the records' INSERT, the runs' UPDATE
    and COMMIT were five. Atomic and, autocommitted, durable once it has returned, as the
    transaction was; not prepared on the server (its shape changes with the batch)."""
    alias = router.db_for_write(OutboxItem)
    db = connections[alias]
    if db.vendor != "postgresql" or db.in_atomic_block or not db.get_autocommit():
        return None
    if router.db_for_write(StepRun) != alias or held.overlaps(journal):
        return None
    ids = {item.pk for item in items}
    if ids & (held.changes(OutboxItem) | journal.changes(OutboxItem)):
        return None  # one statement must not UPDATE a row twice
    complete = completion(db, items)
    if complete is None:
        return None
    known, rest = held.bulk_parts(db), journal.bulk_parts(db, complete.ours)
    if known is None or rest is None:
        return None
    heads, params = list(complete.heads), list(complete.params)
    inserted: list[tuple[str, Part]] = []
    for n, part in enumerate([*known, *rest]):
        heads.append(f"w{n} AS ({part.sql})")
        params += part.params
        if part.rows:
            inserted.append((f"w{n}", part))
    ids_sql = "".join(f", ARRAY(SELECT * FROM {name})" for name, _ in inserted)  # noqa: S608
    # CTE names made here, and the parts' and the completion's SQL: values are parameters.
    sql = f"WITH {', '.join(heads)} SELECT {complete.ours}{ids_sql}"
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        ours, *arrays = cursor.fetchone()
    # Empty arrays where the condition kept a part from inserting.
    for (_, part), new_ids in zip(inserted, arrays, strict=True):
        for obj, new_pk in zip(part.rows, new_ids or (), strict=False):
            saved(obj, new_pk, alias)
    if ours:
        complete.done()
    return bool(ours)


def _has_receivers(model: type) -> bool:
    """``save()`` sends these; a project listening for them gets the transaction path."""
    return signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)


def _forget(held: Journal, journal: Journal, record: StepRun) -> None:
    """After a rollback: the rows written in it got ids that were not kept."""
    held.forget_ids()
    journal.forget_ids()
    record.pk = None
    record._state.adding = True

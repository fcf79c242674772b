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

from collections.abc import Callable

from django.db import IntegrityError, transaction

from automate.journal import Journal
from automate.models import StepRun

__all__ = ["Commits", "HandedOn"]


class Commits:
    """One commit per request, made at once (outside a batch)."""

    def start(self, journal: Journal, record: StepRun, confirm: Callable[[], bool] | None) -> bool:
        """Commit ``record`` (``running``) and everything ``journal`` holds if the item is
        still ours; False when it is not (or another worker is on this very attempt)."""
        try:
            with transaction.atomic():
                if confirm is not None and not confirm():
                    return False
                journal.write()
                record.save(force_insert=True)
        except IntegrityError:
            _forget(journal, record)
            return False
        journal.clear()
        return True

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
        held = self.held
        try:
            with transaction.atomic():
                held.write()  # known outcomes: written whether or not the item is still ours
                ours = confirm is None or confirm()
                if ours:
                    journal.write()
                    record.save(force_insert=True)
        except IntegrityError:
            # Another worker on this very attempt: nothing of the transaction was kept.
            held.forget_ids()
            _forget(journal, record)
            self.commit_held()
            return False
        except BaseException:
            held.forget_ids()  # still held: the next commit, or the settlement, writes them
            raise
        held.clear()
        if ours:
            journal.clear()
        return ours

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

    def commit_held(self) -> None:
        """Commit the held outcomes now, in a transaction of their own."""
        if self.held:
            super().write(self.held)


def _forget(journal: Journal, record: StepRun) -> None:
    """After a rollback: the rows written in it got ids that were not kept."""
    journal.forget_ids()
    record.pk = None
    record._state.adding = True

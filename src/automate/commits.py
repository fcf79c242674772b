"""The commits a non-idempotent step needs, made one by one or shared within a batch.

A non-idempotent step's ``running`` record is committed, in the transaction that confirms
its outbox item is still ours, before its call; its outcome is committed after the call,
before the run goes on. :class:`Commits` makes those commits at once: two commits per
non-idempotent step and event, each waiting for the disk.

:class:`Lockstep` keeps that guarantee and halves the commits of a claimed batch: each
item is processed in its own greenlet (one thread, one database connection, switching
only at these commit points, never inside a transaction), and an item that reaches one
of them hands it to the batch and waits. The batch commits each call's outcome together
with the ``running`` record of the next call (of this item or the next one), so a batch
of events costs one commit per non-idempotent call instead of two.

What a crash means is unchanged, and so is how much it costs: at most one call per
worker thread is between its committed ``running`` record and its committed outcome, as
without a batch. A record left ``running`` is never run again blindly; the next pass
marks it interrupted and dead-letters its run as an unknown outcome
(:meth:`automate.runner.RunExecution.refusal`). Committing the ``running`` records of
many calls at once, before the first of them, would save more commits, but a crash
during the first call would then leave every one of them unknown, calls that never
happened included: one kill would dead-letter a whole batch instead of one run.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from greenlet import getcurrent, greenlet

from automate.journal import Journal
from automate.models import StepRun
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem

__all__ = ["Commits", "GroupedCommits", "Lockstep"]


class Commits:
    """One commit per request, made at once (outside a batch, or when grouping failed)."""

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
            return False
        journal.clear()
        return True

    def write(self, journal: Journal) -> None:
        """Commit what ``journal`` holds (a non-idempotent step's outcome)."""
        with transaction.atomic():
            journal.write()
        journal.clear()


@dataclass
class _Request:
    """A commit an item waits for: a step's start (with ``record``) or an outcome."""

    item: OutboxItem
    journal: Journal
    record: StepRun | None = None
    confirm: Callable[[], bool] | None = None


class _Failed(Exception):
    """The grouped transaction could not be made: make each request on its own."""


class GroupedCommits(Commits):
    """An item's commits inside a :class:`Lockstep` batch: handed to the batch, which
    makes them together with the other items'. Outside the batch's greenlets (never the
    case in a batch, but harmless) they are made at once."""

    def __init__(self, lockstep: Lockstep, item: OutboxItem) -> None:
        self.lockstep, self.item = lockstep, item

    def start(self, journal: Journal, record: StepRun, confirm: Callable[[], bool] | None) -> bool:
        return bool(self.lockstep.wait(_Request(self.item, journal, record, confirm)))

    def write(self, journal: Journal) -> None:
        self.lockstep.wait(_Request(self.item, journal))


class Lockstep:
    """Runs one callable per item in its own greenlet and shares the commits they wait for
    (see the module's docstring).

    ``lease_seconds`` is what a start's confirmation renews the item's lease for;
    ``finished`` is called in the driving greenlet after each item's callable returns
    (the batch settles there).
    """

    def __init__(self, lease_seconds: int, finished: Callable[[], None]) -> None:
        self.lease_seconds = lease_seconds
        self.finished = finished
        self.driver: greenlet | None = None

    def commits_for(self, item: OutboxItem) -> Commits:
        return GroupedCommits(self, item)

    def wait(self, request: _Request) -> object:
        """Hand ``request`` to the driver and wait for its result (in an item's greenlet)."""
        driver = self.driver
        if driver is None or getcurrent() is driver:
            if request.record is not None:
                return Commits().start(request.journal, request.record, request.confirm)
            Commits().write(request.journal)
            return None
        return driver.switch(request)

    def run(self, jobs: list[Callable[[], None]]) -> None:
        """Run the jobs, in order and interleaved at their commits, until all have ended."""
        self.driver = getcurrent()
        try:
            self._drive(jobs)
        finally:
            self.driver = None

    def _drive(self, jobs: list[Callable[[], None]]) -> None:
        # (greenlet, how to resume it: ("send", value) or ("throw", exception))
        runnable: deque[tuple[greenlet, tuple[str, object]]] = deque()
        for job in jobs:
            g = greenlet(job)
            g.gr_context = contextvars.copy_context()  # the caller's trace, spans...
            runnable.append((g, ("send", None)))
        waiting: list[tuple[greenlet, _Request]] = []
        while runnable or waiting:
            if runnable:
                g, (how, value) = runnable.popleft()
                if how == "throw":
                    assert isinstance(value, BaseException)
                    request = g.throw(value)
                else:
                    # A greenlet is true once started: the first switch starts its job.
                    request = g.switch(value) if g else g.switch()
                if g.dead:
                    self.finished()
                    continue
                assert isinstance(request, _Request)
                waiting.append((g, request))
                if request.record is not None:
                    continue  # a start waits: the next outcome, or an idle batch, takes it
            # An outcome (at once: a known outcome must not wait), or nothing else can go on.
            runnable.extend(self._commit(self._next_commit(waiting)))

    @staticmethod
    def _next_commit(waiting: list[tuple[greenlet, _Request]]) -> list[tuple[greenlet, _Request]]:
        """Take out of ``waiting`` what the next commit makes: every outcome, and the
        oldest start (one call at a time between a committed start and its outcome)."""
        taken = [entry for entry in waiting if entry[1].record is None]
        start = next((entry for entry in waiting if entry[1].record is not None), None)
        if start is not None:
            taken.append(start)
        waiting[:] = [entry for entry in waiting if not any(entry is t for t in taken)]
        return taken

    def _commit(
        self, waiting: list[tuple[greenlet, _Request]]
    ) -> list[tuple[greenlet, tuple[str, object]]]:
        """Make the waiting commits in one transaction; each greenlet's resume value."""
        try:
            results = self._commit_together([request for _, request in waiting])
        except (IntegrityError, _Failed):
            # Another worker on one of these attempts: each on its own, as without a batch.
            return [(g, self._commit_alone(request)) for g, request in waiting]
        except Exception as exc:  # a lost database: each item fails as it would alone
            return [(g, ("throw", exc)) for g, _ in waiting]
        for _, request in waiting:
            request.journal.clear()
        return [(g, ("send", result)) for (g, _), result in zip(waiting, results, strict=True)]

    def _commit_together(self, requests: list[_Request]) -> list[object]:
        starts = [r for r in requests if r.record is not None]
        with transaction.atomic():
            held = {r.item.pk for r in starts if queue.renew(r.item, self.lease_seconds)}
            combined = Journal()
            results: list[object] = []
            for request in requests:
                if request.record is not None and request.item.pk not in held:
                    results.append(False)  # lost: nothing of it is written, nothing called
                    continue
                combined.extend(request.journal)
                if request.record is not None:
                    combined.add(request.record)
                results.append(True if request.record is not None else None)
            combined.write()
            if any(r.record is not None and r.record.pk is None for r in starts):
                raise _Failed("the backend returned no ids for the records")
        return results

    @staticmethod
    def _commit_alone(request: _Request) -> tuple[str, object]:
        # The rolled-back transaction may have given rows their ids: they were not kept.
        request.journal.forget_ids()
        try:
            if request.record is not None:
                request.record.pk = None
                request.record._state.adding = True
                return ("send", Commits().start(request.journal, request.record, request.confirm))
            Commits().write(request.journal)
        except Exception as exc:
            return ("throw", exc)
        return ("send", None)

"""A worker's pass over a claimed batch: make each item's runs, execute them, settle.

Data flow: leased outbox items (from :func:`automate.dispatch.claim`) -> their runs
(:mod:`automate.runs`) -> :func:`automate.runner.execute_run` for each run, with the
item's :class:`~automate.journal.Journal` -> a :class:`ProcessedItem` waiting to be
settled -> :meth:`ClaimedBatch.flush` writes the journals and settles the items with the
outbox API (``complete``, ``fail``, ``release``) in one transaction.

The results are settled together at the end of the batch and whenever an item finishes
:data:`FLUSH_SECONDS` or more after the last settlement (see :mod:`automate.journal` for
what may wait and what is committed at once). The items run in order, in the worker's
thread; a non-idempotent call's outcome is committed with the batch's next commit, the
next call's ``running`` record or the settlement (:class:`automate.commits.HandedOn`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from automate import instrument, runner, runs
from automate.commits import Commits, HandedOn
from automate.flow import failure, parking
from automate.flow.definition import StepTree
from automate.journal import Journal
from automate.models import RunStatus, WorkflowRun, carried_by
from automate.outcomes import Outcome
from automate.runner import RunOutcome
from automate_core.conf import settings as automate_settings
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem, OutboxStatus
from automate_core.tracing import trace

logger = logging.getLogger("automate.dispatch")

#: Once this long has passed since the last settlement, the next item to finish settles
#: every finished one, so a long batch commits its results as it goes, not only at its end.
FLUSH_SECONDS = 1.0

#: The error message of runs dead-lettered because their retries used all their item's
#: attempts.
USED_ALL_ATTEMPTS = "the event used all its outbox attempts"

#: Each workflow version's steps, compiled once per process: new steps make a new version,
#: so a batch reads them only the first time. Keyed with the database and the workflow's
#: ``updated_at`` too, which every batch reads with its runs: steps edited in place mark
#: their workflow changed (automate.models.touch_workflows), and so does any save of it,
#: so every process reads them again; so is a workflow made again under a reused id (a
#: dropped test database).
_TREES: dict[tuple[str | None, int, int, object], StepTree] = {}
_TREES_MAX = 512

#: What became of one item of the pass: its runs' outcomes, ``LOST`` (another worker has
#: it), ``RELEASED`` (the worker is stopping) or the error that kept it from running.
ItemResult = list[RunOutcome] | Outcome | BaseException


@dataclass
class ProcessedItem:
    """An item the pass is done with, and its records, until the next settlement."""

    item: OutboxItem
    result: ItemResult
    journal: Journal
    #: Its runs left retrying that have ``on_failure`` steps: if the outbox gives up on
    #: the item now, they get alert items (:mod:`automate.flow.failure`).
    alerting: list[WorkflowRun] = field(default_factory=list)


class ClaimedBatch:
    """One worker's pass over a claimed batch: run each item, settle them together.

    The leases are checked once at the start (unless the caller has just read them:
    ``checked``), renewed for the whole batch whenever a third of the lease has passed,
    confirmed in the transaction that records a non-idempotent step's start, and checked
    under lock when results are settled (for items all done, by the UPDATE that completes
    them): the results of an item that is no longer ours are dropped, never written.
    """

    clock = staticmethod(time.monotonic)

    def __init__(
        self,
        items: list[OutboxItem],
        should_stop: Callable[[], bool] | None,
        *,
        checked: bool = False,
    ) -> None:
        self.items = items
        self.should_stop = should_stop
        # The caller read the items' leases just now (a claim, or the task's own SELECT):
        # the check at the start would read the same rows again.
        self.checked = checked
        self.lease_seconds = automate_settings.OUTBOX_LEASE_SECONDS
        self.renewed_at = self.flushed_at = self.clock()
        self.lost: set[int] = set()
        self.processed: list[ProcessedItem] = []  # not yet settled
        self.settled: set[int] = set()
        self.counts: dict[str, int] = {}
        # Non-idempotent steps' outcomes wait for the next commit (automate.commits).
        self.commits = HandedOn()

    def run(self) -> dict[str, int]:
        """Process every item still held, settle them; return how many ended in each state."""
        held = {item.pk for item in self.items} if self.checked else queue.held(self.items)
        self.lost = {item.pk for item in self.items if item.pk not in held}
        todo = [item for item in self.items if item.pk in held]
        item_runs = self.runs_of(todo)
        for item in todo:
            self.processed.append(self.process(item, item_runs[item.pk], self.commits))
            self.finished()
        self.flush()
        for pk in self.lost:
            logger.warning("lost the lease on outbox item %s", pk)
        self._count(Outcome.LOST, len(self.lost))
        return self.counts

    def runs_of(self, items: list[OutboxItem]) -> dict[int, list[WorkflowRun] | Exception]:
        """Each item's runs, made for the batch at once; if that fails, item by item, so
        an item whose runs cannot be made fails alone."""
        try:
            return dict(runs.ensure_runs_for(items)) if items else {}
        except Exception:
            logger.exception("making the runs of %d outbox items at once failed", len(items))
        found: dict[int, list[WorkflowRun] | Exception] = {}
        for item in items:
            try:
                found[item.pk] = runs.ensure_runs(item)
            except Exception as exc:
                found[item.pk] = exc
        return found

    def finished(self) -> None:
        """An item is done: settle the finished ones if the last settlement is old enough."""
        if self.clock() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def process(
        self,
        item: OutboxItem,
        item_runs: list[WorkflowRun] | Exception,
        commits: Commits | None = None,
    ) -> ProcessedItem:
        """Execute one item's runs, unless the worker is stopping; never raise."""
        processed = ProcessedItem(item, Outcome.RELEASED, Journal())
        if self.should_stop is not None and self.should_stop():
            return processed
        try:
            with trace(item.trace_id):
                processed.result = self.execute(processed, item_runs, commits)
        except Exception as exc:  # a bug or a lost database: retry the item later
            logger.exception("processing outbox item %s failed", item.pk)
            processed.journal.clear()
            processed.result = exc
        return processed

    def execute(
        self,
        processed: ProcessedItem,
        item_runs: list[WorkflowRun] | Exception,
        commits: Commits | None = None,
    ) -> ItemResult:
        """Execute the runs in order; stop at the first one that lost the item or paused."""
        if isinstance(item_runs, Exception):
            return item_runs
        item, journal = processed.item, processed.journal
        outcomes = []
        for run in item_runs:
            # An alert item's pass runs only its run's on_failure steps (automate.flow.failure).
            alerted = getattr(run, failure.ALERTED_BY, None) == item.pk
            if not alerted and run.carrier_id != item.pk:
                # Parked, then resumed by another item, which carries it from then on.
                outcomes.append(RunOutcome(Outcome.WAITING))
                continue
            execute = runner.execute_on_failure if alerted else runner.execute_run
            with nullcontext() if alerted else instrument.run(run, item):
                outcome = execute(
                    run,
                    stop_reason=lambda: self.stop_reason(item),
                    confirm=queue.Renewal(item, self.lease_seconds),
                    journal=journal,
                    steps=step_tree(run),
                    commits=commits,
                )
            if not alerted and outcome.status == Outcome.RETRY and step_tree(run).on_failure:
                processed.alerting.append(run)
            if outcome.status == Outcome.LOST:
                self.lost.add(item.pk)
                return Outcome.LOST
            if outcome.status == Outcome.PAUSED:
                return Outcome.RELEASED
            outcomes.append(outcome)
        return outcomes

    def stop_reason(self, item: OutboxItem) -> Outcome | None:
        """Asked before each step: ``PAUSED`` when the worker is stopping, ``LOST`` when
        the item is no longer ours; renews the batch's leases when a third has passed."""
        if self.should_stop is not None and self.should_stop():
            return Outcome.PAUSED
        if self.clock() - self.renewed_at >= self.lease_seconds / 3:
            self.renew()
        return Outcome.LOST if item.pk in self.lost else None

    def renew(self) -> None:
        """Extend the lease of every item of the batch not yet settled."""
        open_items = [i for i in self.items if i.pk not in self.settled and i.pk not in self.lost]
        held = queue.renew_many(open_items, self.lease_seconds)
        self.lost |= {item.pk for item in open_items if item.pk not in held}
        self.renewed_at = self.clock()

    def flush(self) -> None:
        """Write the processed items' journals and settle the items, in one transaction
        (on PostgreSQL, when all are done and still ours, in one statement)."""
        processed, self.processed = self.processed, []
        if not processed:
            self.commits.commit_held()
            return
        if all(_finished(p) for p in processed) and self._settle_at_once(processed):
            held = {p.item.pk for p in processed}
            statuses: list[str] = [OutboxStatus.DONE] * len(processed)
        else:
            held, statuses = self._settle_in_transaction(processed)
        self.lost |= {p.item.pk for p in processed if p.item.pk not in held}
        self.settled |= {p.item.pk for p in processed}
        for status in statuses:
            self._count(status)
        self.flushed_at = self.clock()

    def _settle_at_once(self, processed: list[ProcessedItem]) -> bool:
        """Items all done and all still ours: complete them and write their journals with
        one statement (:meth:`HandedOn.settle_at_once`); False when that did not settle
        them (the held outcomes may have been written: the transaction writes the rest)."""
        journal = Journal()
        for p in processed:
            journal.extend(p.journal)
        return bool(self.commits.settle_at_once(journal, [p.item for p in processed]))

    def _settle_in_transaction(self, processed: list[ProcessedItem]) -> tuple[set[int], list[str]]:
        """Write the held outcomes and the journals of the items still ours and settle
        those, in one transaction; return their ids and new states."""
        statuses: list[str]
        with transaction.atomic():
            # The calls' outcomes, whether or not their items are still ours.
            self.commits.settle()
            if all(_finished(p) for p in processed):
                held = _complete_held([p.item for p in processed])
                ours = [p for p in processed if p.item.pk in held]
                _write_journals(ours)
                statuses = [OutboxStatus.DONE] * len(ours)
            else:
                held = queue.held([p.item for p in processed], lock=True)
                ours = [p for p in processed if p.item.pk in held and p.result != Outcome.LOST]
                statuses = _settle_all(ours)
        self.commits.settled()
        return held, statuses

    def _count(self, status: str, n: int = 1) -> None:
        if n:
            self.counts[str(status)] = self.counts.get(str(status), 0) + n


def step_tree(run: WorkflowRun) -> StepTree:
    """The steps of ``run``'s workflow version, read from the database once per process."""
    workflow = run.workflow
    key = (run._state.db, workflow.pk, run.workflow_version, workflow.updated_at)
    tree = _TREES.get(key)
    if tree is None:
        tree = StepTree.of(workflow, run.workflow_version)
        if len(_TREES) >= _TREES_MAX:
            _TREES.clear()  # versions are few; a process that saw this many starts over
        _TREES[key] = tree
    return tree


def _finished(p: ProcessedItem) -> bool:
    """Whether the item is done: every run of it ended, or waits parked."""
    return isinstance(p.result, list) and _all_done(p.result)


def _complete_held(items: list[OutboxItem]) -> set[int]:
    """Mark the items done where they are still ours; return the ids of those.

    The UPDATE that completes them is the lease check and takes their locks, so what
    their journals hold is written for those alone, in the same transaction: the
    common case (every item still ours) reads nothing. When some were lost, the rows
    this UPDATE completed are read back: done under our own lease token."""
    if queue.complete_many(items) == len(items):
        return {item.pk for item in items}
    tokens = {item.pk: item.lease_token for item in items}
    done = OutboxItem.objects.filter(pk__in=list(tokens), status=OutboxStatus.DONE)
    return {pk for pk, token in done.values_list("pk", "lease_token") if tokens[pk] == token}


def _write_journals(ours: list[ProcessedItem]) -> None:
    journal = Journal()
    for p in ours:
        journal.extend(p.journal)
    journal.write()


def _settle_all(ours: list[ProcessedItem]) -> list[str]:
    """Write the items' journals and settle each item (the caller holds the transaction
    and the items' locks); return each item's new state."""
    _write_journals(ours)
    done = [p.item for p in ours if isinstance(p.result, list) and _all_done(p.result)]
    queue.complete_many(done)
    statuses: list[str] = [OutboxStatus.DONE] * len(done)
    for p in ours:
        if isinstance(p.result, list) and not _all_done(p.result):
            statuses.append(_settle_unfinished(p, p.result))
        elif p.result == Outcome.RELEASED:
            queue.release(p.item)
            statuses.append(Outcome.RELEASED)
        elif isinstance(p.result, BaseException):
            statuses.append(queue.fail(p.item, p.result, retryable=True))
    return statuses


def _all_done(outcomes: list[RunOutcome]) -> bool:
    return all(o.status not in (Outcome.RETRY, Outcome.DEAD) for o in outcomes)


def _settle_unfinished(p: ProcessedItem, outcomes: list[RunOutcome]) -> str:
    """Settle an item whose runs did not all finish: retry it later, or dead-letter it."""
    item = p.item
    retries = [o for o in outcomes if o.status == Outcome.RETRY]
    dead = [o for o in outcomes if o.status == Outcome.DEAD]
    if retries:
        status = queue.fail(item, _error_of(retries[0]), retryable=True)
        if status == OutboxStatus.FAILED:
            # The failing step's own backoff, rather than the outbox's default.
            delay = min(o.retry_in or 0.0 for o in retries)
            OutboxItem.objects.filter(pk=item.pk, status=OutboxStatus.FAILED).update(
                available_at=timezone.now() + timedelta(seconds=delay)
            )
        elif status == OutboxStatus.DEAD:
            error = {"code": failure.EXHAUSTED, "message": USED_ALL_ATTEMPTS}
            exhausted = carried_by([item.pk]).filter(status=RunStatus.RETRYING)
            if exhausted.update(status=RunStatus.DEAD, finished_at=timezone.now(), error=error):
                # In this transaction: with their end.
                failure.alert(p.alerting)
                parking.wake_orphaned_parents()
        return status
    return queue.fail(item, _error_of(dead[0]), retryable=False)


def _error_of(outcome: RunOutcome) -> BaseException | str:
    return outcome.error if outcome.error is not None else f"run ended as {outcome.status}"

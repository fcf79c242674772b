"""Executes workflow runs: the one code path behind the Celery tasks and the embedded worker.

Data flow: :mod:`automate.dispatch` hands over a run (made by :mod:`automate.runs`) ->
:func:`execute_run` walks its steps in order, each executed by its
:mod:`automate.steps` executor (which may call a connector) -> every attempt is recorded
as a :class:`StepRun` -> the pass ends with a :class:`RunOutcome` that dispatch settles
the outbox item from. The runner never imports dispatch, services or the workers.

Retries live in one layer: the outbox item. A step that fails with a retryable error ends
the worker's pass over the item, and the item goes back to the queue
(``queue.fail``) with the step's own exponential backoff; the next claim resumes each
run where it stopped. Nothing here loops or sleeps, and the Celery tasks never retry, so
one failure is never retried by two layers at once (8 task retries x 3 step retries...),
a waiting retry holds no worker thread, and a crashed worker's runs resume the same way
as a failed step's, through the item's lease.

Every attempt at a step is recorded as a :class:`StepRun`, the side-effect record. A
non-idempotent step's record is committed as ``running`` before the step executes (in the
same transaction that confirms the item is still ours) and committed again with its
outcome right after (in a batch, the outcome is held until the next commit the worker
makes, the next call's start or the settlement: :mod:`automate.commits`; the run never
goes on to another call before it). An idempotent step's record waits in the pass's
:class:`~automate.journal.Journal` and is written with the item's settlement, in the
batch's one commit: if the worker dies first the step simply runs again, which is what
idempotent means. On resume a succeeded step's output is reused, never recomputed, and a
step still ``running`` means its worker died mid-call: an idempotent step runs again, a
non-idempotent one is dead-lettered as an unknown outcome instead of risking a second
charge, e-mail or ticket.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone
from pydantic import BaseModel

from automate import instrument, templating
from automate.commits import Commits
from automate.conf import settings as app_settings
from automate.flow import blocks, parking
from automate.flow.definition import StepTree
from automate.journal import Journal
from automate.models import (
    FINISHED_RUN_STATUSES,
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowStep,
)
from automate.outcomes import Outcome, RunOutcome
from automate.recording import as_automate_error as _as_automate_error
from automate.recording import error_dict as _error_dict
from automate.recording import jsonable as _jsonable
from automate.recording import named as _named

# Run creation lives in automate.runs; these names stay importable from here.
from automate.runs import ensure_runs, ensure_runs_for, event_context
from automate.steps.base import StepContext, StepExecutor, StepResult
from automate.steps.registry import NotRegistered, get_step
from automate_core import redaction
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes

__all__ = [
    "RunOutcome",
    "StopReason",
    "backoff_seconds",
    "ensure_runs",
    "ensure_runs_for",
    "event_context",
    "execute_on_failure",
    "execute_run",
]

logger = logging.getLogger("automate.runner")

#: Asked before each step: ``None`` to go on, or why to stop (``LOST``, ``PAUSED``).
StopReason = Callable[[], Outcome | None]


def execute_run(
    run: WorkflowRun,
    *,
    stop_reason: StopReason | None = None,
    confirm: Callable[[], bool] | None = None,
    journal: Journal | None = None,
    steps: StepTree | Sequence[WorkflowStep] | None = None,
    commits: Commits | None = None,
) -> RunOutcome:
    """Run (or resume) ``run``'s steps in order; record each attempt; never raise.

    ``stop_reason`` is asked before each step: ``None`` to go on, ``Outcome.LOST`` when the
    item's lease was lost to another worker, ``Outcome.PAUSED`` when the worker is shutting
    down. ``confirm`` is asked inside the transaction that records a non-idempotent step's
    start: False when the item is no longer ours (the step is then not executed).

    With a ``journal`` the records of idempotent steps and the run's status are left in
    it for the caller to write with the item's settlement; without one they are written
    before this returns. ``commits`` makes a non-idempotent step's two commits (at once by
    default; a batch hands each outcome on to its next commit, see :mod:`automate.commits`).
    """
    if journal is None:
        own = Journal()
        ended = execute_run(
            run,
            stop_reason=stop_reason,
            confirm=confirm,
            journal=own,
            steps=steps,
            commits=commits,
        )
        if ended.status != Outcome.LOST:
            _write_now(own)
        return ended
    if run.status in FINISHED_RUN_STATUSES:
        return RunOutcome(_FINISHED_OUTCOMES.get(str(run.status), Outcome.COMPLETED))
    if run.status == RunStatus.WAITING:
        return RunOutcome(Outcome.WAITING)  # parked: only the item that resumes it runs it
    tree = steps if isinstance(steps, StepTree) else StepTree.of(run.workflow, run.workflow_version)
    execution = RunExecution(run, journal, confirm, stop_reason, commits=commits or Commits())
    execution.start()
    if run.cancel_requested_at is not None:
        return execution.cancel()
    walked = execution.walk(tree, tree.main, "", execution.context)
    if walked is None:
        return execution.finish(RunStatus.COMPLETED)
    if walked.status == Outcome.FILTERED:
        return execution.finish(RunStatus.FILTERED)
    if walked.status == Outcome.DEAD and tree.on_failure:
        error = walked.error
        failure = blocks.failure_context(
            execution.current_step,
            str(error.code) if error else "internal",
            error.message if error else "",
        )
        blocks.run_on_failure(execution, tree, failure)
        if error is not None:
            execution.dead(error)  # a failed on_failure step must not leave it "retrying"
    return walked


def execute_on_failure(
    run: WorkflowRun,
    *,
    stop_reason: StopReason | None = None,
    confirm: Callable[[], bool] | None = None,
    journal: Journal,
    steps: StepTree,
    commits: Commits | None = None,
) -> RunOutcome:
    """Run the ``on_failure`` steps of ``run``, which the outbox dead-lettered outside any
    pass (:mod:`automate.flow.failure`), from the pass over its own alert item.

    The run's row is not written: it is dead already, with its own error, and its parent
    was woken when it died. Only the steps' records are, as in any pass (``journal``,
    ``commits``, ``confirm`` as for :func:`execute_run`). ``COMPLETED`` when the steps
    had their turn, ``LOST`` when the item was lost meanwhile.
    """
    execution = RunExecution(
        run, journal, confirm, stop_reason, commits=commits or Commits(), settled=True
    )
    execution.load()
    latest = _latest_records(execution, steps)
    for name, record in latest.items():
        if record.path == "" and record.status in (StepStatus.SUCCEEDED, StepStatus.STOPPED):
            execution.reuse_named(name, record)  # as the steps before it saw them
    error = run.error or {}
    failure = blocks.failure_context(
        _failure_step(latest),
        str(error.get("code", "exhausted")),
        str(error.get("message", "")),
    )
    if blocks.run_on_failure(execution, steps, failure):
        return RunOutcome(Outcome.LOST)
    return RunOutcome(Outcome.COMPLETED)


def _latest_records(execution: RunExecution, tree: StepTree) -> dict[str, StepRun]:
    """The latest record of each step of the run's main steps in this replay, by step
    name, oldest first."""
    names = {step.pk: step.name for step in tree.rows}
    skip = {step.pk for step in tree.on_failure}
    mine = [
        record
        for records in execution.history.values()
        for record in records
        if record.replay == execution.run.replay_count and record.step_id not in skip  # type: ignore[attr-defined]
    ]
    latest: dict[str, StepRun] = {}
    for record in sorted(mine, key=lambda r: r.pk):
        name = names.get(record.step_id)  # type: ignore[attr-defined]
        if name is not None:
            latest.pop(name, None)  # re-inserted: the dict stays in record order
            latest[name] = record
    return latest


def _failure_step(latest: dict[str, StepRun]) -> str | None:
    """The step a run that died outside any pass was on, when its records say: the step
    of its latest record, if that one did not succeed (a call cut off mid-way, a failed
    attempt waiting for its retry); else None (its worker died before it wrote any)."""
    if not latest:
        return None
    name, record = next(reversed(latest.items()))
    unfinished = (StepStatus.RUNNING, StepStatus.FAILED, StepStatus.INTERRUPTED)
    return name if record.status in unfinished else None


#: The outcome of a pass over a run that had already finished.
_FINISHED_OUTCOMES: dict[str, Outcome] = {
    RunStatus.DEAD: Outcome.DEAD,
    RunStatus.FILTERED: Outcome.FILTERED,
    RunStatus.CANCELLED: Outcome.CANCELLED,
}

#: A step record's key in a run's history: the step and its iteration path.
RecordKey = tuple[int, str]


@dataclass
class RunExecution:
    """One pass over one run: the template context its steps see, where its records go
    (``journal``) and how its outbox item is confirmed as still ours (``confirm``)."""

    run: WorkflowRun
    journal: Journal
    confirm: Callable[[], bool] | None
    stop_reason: StopReason | None = None
    #: Makes a non-idempotent step's commits (:mod:`automate.commits`).
    commits: Commits = field(default_factory=Commits)
    context: dict[str, Any] = field(default_factory=dict)
    #: The run's step records by (step, iteration path), oldest first.
    history: dict[RecordKey, list[StepRun]] = field(default_factory=dict)
    records: int = 0
    current_step: str = ""
    checked_cancel_at: float = 0.0
    ended: bool = False  # a dead() already told a waiting parent
    #: The run's end is written already (it died outside any pass; its on_failure steps
    #: run now): its row is left as it is, and its parent was woken when it died.
    settled: bool = False

    def __post_init__(self) -> None:
        self.ended = self.ended or self.settled

    def start(self) -> None:
        """Mark the run ``running`` and build the context its templates render with."""
        run, now = self.run, timezone.now()
        run.status, run.started_at = RunStatus.RUNNING, run.started_at or now
        self.save_run(["status", "started_at"])
        self.load()

    def save_run(self, fields: list[str]) -> None:
        """Journal the run's ``fields``, unless its end is written already (``settled``)."""
        if not self.settled:
            self.journal.update(self.run, fields)

    def load(self) -> None:
        """Read the run's step history and build the context its templates render with."""
        run = self.run
        for record in run.step_runs.all():
            self.history.setdefault((record.step_id, record.path), []).append(record)  # type: ignore[attr-defined]
            self.records += 1
        self.checked_cancel_at = time.monotonic()
        workflow: Workflow = run.workflow
        self.context = {
            "event": run.event,
            "steps": {},
            "workflow": {
                "key": workflow.key,
                "name": workflow.name,
                "version": run.workflow_version,
            },
            "trace_id": run.trace_id,
        }

    def walk(
        self, tree: StepTree, steps: Sequence[WorkflowStep], path: str, scope: dict[str, Any]
    ) -> RunOutcome | None:
        """Run (or resume) ``steps`` in order at iteration ``path``; None when all are
        done, else how the pass ends (``FILTERED`` when a step stopped the run)."""
        for step in steps:
            attempts = self.attempts(step, path)
            last = attempts[-1] if attempts else None
            if last is not None and last.status in (StepStatus.SUCCEEDED, StepStatus.STOPPED):
                self.reuse(step, last, scope)  # done in an earlier pass: its output, not a rerun
                if last.status == StepStatus.STOPPED:
                    return RunOutcome(Outcome.FILTERED)
                continue
            ended = self.boundary()
            if ended is not None:
                return ended
            self.current_step = step.name
            handler = blocks.HANDLERS.get(step.type)
            if handler is not None:
                ended = handler(self, tree, step, attempts, path, scope)
            else:
                ended, result = self.run_step(step, attempts, path, scope)
                if ended is None and result.stop:
                    ended = RunOutcome(Outcome.FILTERED)
            if ended is not None:
                return ended
        return None

    def attempts(self, step: WorkflowStep, path: str) -> list[StepRun]:
        return self.history.get((step.pk, path), [])

    def boundary(self) -> RunOutcome | None:
        """Asked before each step: how the pass ends here, if it does (the worker stops,
        the item was lost, the run was cancelled)."""
        stop = self.stop_reason() if self.stop_reason is not None else None
        if stop is not None:
            return RunOutcome(stop)
        interval = app_settings.FLOW_CANCEL_CHECK_SECONDS
        if time.monotonic() - self.checked_cancel_at >= interval:
            self.checked_cancel_at = time.monotonic()
            requested = WorkflowRun.objects.filter(
                pk=self.run.pk, cancel_requested_at__isnull=False
            ).exists()
            if requested:
                return self.cancel()
        return None

    def new_record(
        self, step: WorkflowStep, attempts: list[StepRun], path: str, **fields: Any
    ) -> StepRun:
        """A new attempt's record (not yet saved), added to the history; INVALID_ARGUMENT
        when the run has made ``AUTOMATE["FLOW_MAX_STEPS_PER_RUN"]`` records."""
        limit = app_settings.FLOW_MAX_STEPS_PER_RUN
        if self.records >= limit:
            raise AutomateError(
                ErrorCodes.INVALID_ARGUMENT,
                f"step {step.name!r}: the run made {limit} step records, the most "
                'AUTOMATE["FLOW_MAX_STEPS_PER_RUN"] allows',
                retryable=False,
                details={"step": step.name, "limit": limit},
            )
        run = self.run
        record = StepRun(
            run=run, step=step, attempt=len(attempts) + 1, replay=run.replay_count, path=path,
            status=StepStatus.RUNNING, started_at=timezone.now(), **fields,
        )  # fmt: skip
        self.history.setdefault((step.pk, path), []).append(record)
        self.records += 1
        return record

    def render(self, step: WorkflowStep, value: Any, scope: dict[str, Any], where: str) -> Any:
        """Render one config value of ``step``; INVALID_ARGUMENT names the step."""
        try:
            return templating.render_value(value, scope, where=where)
        except AutomateError as exc:
            raise _named(exc, step) from None

    def fail_now(
        self, step: WorkflowStep, record: StepRun | None, error: AutomateError
    ) -> RunOutcome:
        """A permanent failure of ``step``: record it (when it has a record) and dead-letter
        the run."""
        error = _named(error, step)
        if record is not None:
            record.status, record.error = StepStatus.FAILED, _error_dict(error, step)
            record.finished_at = timezone.now()
            if record.pk is None and not self.journal.holds(record):
                self.journal.add(record)
            else:
                self.journal.update(record, ["status", "error", "finished_at"])
        return self.dead(error)

    def complete(
        self, step: WorkflowStep, record: StepRun, output: Any, scope: dict[str, Any]
    ) -> None:
        """Record a control step's output and pass it on to the later steps."""
        record.status, record.finished_at = StepStatus.SUCCEEDED, timezone.now()
        record.output = _jsonable(output)
        if record.pk is None and not self.journal.holds(record):
            self.journal.add(record)
        else:
            self.journal.update(record, ["status", "output", "finished_at"])
        scope["steps"][step.name] = {"output": record.output, "status": "succeeded"}

    def reuse(self, step: WorkflowStep, done: StepRun, scope: dict[str, Any] | None = None) -> None:
        """Give later steps the output a finished attempt recorded."""
        self.reuse_named(step.name, done, scope)

    def reuse_named(self, name: str, done: StepRun, scope: dict[str, Any] | None = None) -> None:
        scope = self.context if scope is None else scope
        scope["steps"][name] = {"output": done.output, "status": done.status}

    def run_step(
        self,
        step: WorkflowStep,
        attempts: list[StepRun],
        path: str = "",
        scope: dict[str, Any] | None = None,
    ) -> tuple[RunOutcome | None, StepResult]:
        """Execute ``step`` once and record it; ``(None, result)`` to go on to the next.

        ``attempts`` are the step's earlier records in this run at iteration ``path``,
        oldest first; ``scope`` is the template context (the run's, or an iteration's).
        """
        scope = self.context if scope is None else scope
        nothing = StepResult()
        try:
            executor_cls = get_step(step.type)
        except NotRegistered as exc:
            error = AutomateError(ErrorCodes.CONFIGURATION, str(exc), retryable=False)
            return self.dead(error), nothing
        refusal = self.refusal(step, executor_cls, attempts)
        if refusal is not None:
            return self.dead(refusal), nothing
        run = self.run
        used = len([sr for sr in attempts if sr.replay == run.replay_count])  # this replay's
        try:
            record = self.new_record(step, attempts, path)
        except AutomateError as exc:
            return self.dead(exc), nothing
        try:
            rendered = templating.render_value(
                step.config, scope, where="config", timeout=float(step.timeout_seconds)
            )
            config = executor_cls.parse_config(rendered, where="config")
        except AutomateError as exc:
            record.status, record.error = StepStatus.FAILED, _error_dict(exc, step)
            record.finished_at = timezone.now()
            self.journal.add(record)
            return self.dead(exc), nothing
        record.input = _jsonable(rendered)
        idempotent = _idempotent(executor_cls, config)
        if idempotent:
            self.journal.add(record)  # written, final, with the item's settlement
            self.commits.before_call()
        elif not self.record_start(record):
            return RunOutcome(Outcome.LOST), nothing
        try:
            ctx = self.step_context(step, record.attempt, scope)
            with instrument.step(run, step, record.attempt):
                result = executor_cls().execute(config, ctx)
        except Exception as exc:
            return self.failed(step, record, _as_automate_error(exc), idempotent, used), nothing
        return None, self.succeeded(step, record, result, idempotent, scope)

    def refusal(
        self, step: WorkflowStep, executor_cls: type[StepExecutor], attempts: list[StepRun]
    ) -> AutomateError | None:
        """Why ``step`` must not be attempted again, if it must not: its last attempt was
        interrupted mid-call and is not idempotent, or this replay's attempts are used up."""
        last = attempts[-1] if attempts else None
        if last is not None and last.status == StepStatus.RUNNING:
            # Its worker died mid-call (or its lease ran out): the outcome is unknown.
            last.status, last.finished_at = StepStatus.INTERRUPTED, timezone.now()
            last.error = {"code": "interrupted", "message": "the worker stopped during this step"}
            self.journal.update(last, ["status", "finished_at", "error"])
            if not _idempotent(executor_cls, step.config):
                return AutomateError(
                    ErrorCodes.INTERNAL,
                    f"step {step.name!r} was interrupted mid-call and is not idempotent: its "
                    "outcome is unknown, so it is not repeated (check the target, then replay)",
                    retryable=False,
                    details={"step": step.name},
                )
        used = [sr for sr in attempts if sr.replay == self.run.replay_count]
        if len(used) >= step.max_attempts:
            return AutomateError(
                ErrorCodes.INTERNAL,
                f"step {step.name!r} used all {step.max_attempts} attempts",
                retryable=False,
                details={"step": step.name},
            )
        return None

    def step_context(
        self, step: WorkflowStep, attempt: int, scope: dict[str, Any] | None = None
    ) -> StepContext:
        """What an executor is told about the attempt it executes."""
        run = self.run
        return StepContext(
            step_name=step.name,
            attempt=attempt,
            trace_id=run.trace_id,
            timeout=float(step.timeout_seconds),
            provider_ctx=ProviderContext(trace_id=run.trace_id),
            run_id=run.pk,
            template_context=self.context if scope is None else scope,
        )

    def succeeded(
        self,
        step: WorkflowStep,
        record: StepRun,
        result: Any,
        idempotent: bool,
        scope: dict[str, Any] | None = None,
    ) -> StepResult:
        """Record a step's result (an executor may return a bare output) and pass its
        output on to the later steps."""
        if not isinstance(result, StepResult):
            result = StepResult(output=result)
        record.status = StepStatus.STOPPED if result.stop else StepStatus.SUCCEEDED
        record.output, record.finished_at = _jsonable(result.output), timezone.now()
        self.journal.update(record, ["status", "output", "finished_at"])
        if not idempotent:
            self.commits.write(self.journal)  # a known outcome must not become an unknown one
        scope = self.context if scope is None else scope
        scope["steps"][step.name] = {"output": record.output, "status": "succeeded"}
        return StepResult(output=record.output, stop=result.stop)

    def record_start(self, record: StepRun) -> bool:
        """Commit a non-idempotent step's ``running`` record, and everything held before
        it, if the item is still ours; False when it is not (or another worker is on this
        very attempt)."""
        return self.commits.start(self.journal, record, self.confirm)

    def failed(
        self,
        step: WorkflowStep,
        record: StepRun,
        error: AutomateError,
        idempotent: bool,
        used: int,
    ) -> RunOutcome:
        """Record a failed attempt: ``RETRY`` the item later if the error allows and
        attempts are left (``used`` before this one), else dead-letter the run."""
        run = self.run
        if not idempotent and error.code == ErrorCodes.TIMEOUT:
            error = AutomateError(
                ErrorCodes.TIMEOUT,
                f"{error.message} (not idempotent: the outcome is unknown, so no retry)",
                provider=error.provider,
                retryable=False,
                details=error.details,
            )
        record.status, record.finished_at = StepStatus.FAILED, timezone.now()
        record.error = _error_dict(error, step)
        self.journal.update(record, ["status", "finished_at", "error"])
        logger.warning("step %r of run %s failed: %s", step.name, run.pk, error)
        if error.retryable and used + 1 < step.max_attempts:
            run.status, run.error = RunStatus.RETRYING, _error_dict(error, step)
            self.save_run(["status", "error"])
            outcome = RunOutcome(Outcome.RETRY, error, backoff_seconds(step, used + 1))
        else:
            outcome = self.dead(error)
        if not idempotent:
            self.commits.write(self.journal)
        return outcome

    def finish(self, status: str) -> RunOutcome:
        """End the run as ``completed`` or ``filtered``."""
        run = self.run
        run.status, run.finished_at = status, timezone.now()
        if status != RunStatus.DEAD:
            run.error = None
        self.save_run(["status", "finished_at", "error"])
        parking.child_ended(self)
        return RunOutcome(Outcome.COMPLETED if status == RunStatus.COMPLETED else Outcome.FILTERED)

    def dead(self, error: AutomateError) -> RunOutcome:
        """Dead-letter the run with ``error`` (redacted)."""
        run = self.run
        run.status, run.finished_at = RunStatus.DEAD, timezone.now()
        run.error = redaction.redact_data(error.as_dict())
        self.save_run(["status", "finished_at", "error"])
        if not self.ended:
            self.ended = True
            parking.child_ended(self)
        return RunOutcome(Outcome.DEAD, error)

    def cancel(self) -> RunOutcome:
        """End the run as ``cancelled`` (``cancel_run`` asked for it)."""
        run = self.run
        run.status, run.finished_at = RunStatus.CANCELLED, timezone.now()
        run.error = {"code": "cancelled", "message": "cancelled with cancel_run"}
        self.save_run(["status", "finished_at", "error"])
        parking.child_ended(self)
        return RunOutcome(Outcome.CANCELLED)

    def park(self) -> RunOutcome:
        """Leave the run ``waiting``: an outbox item resumes it (automate.flow.parking)."""
        run = self.run
        run.status = RunStatus.WAITING
        self.save_run(["status"])
        return RunOutcome(Outcome.WAITING)


def _write_now(journal: Journal) -> None:
    with transaction.atomic():
        journal.write()
    journal.clear()


def backoff_seconds(step: WorkflowStep, attempt: int) -> float:
    """The step's exponential backoff with equal jitter, in [d/2, d] for the attempt's d."""
    delay = min(float(step.max_backoff_seconds), float(step.backoff_seconds) * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _idempotent(executor_cls: type[StepExecutor], config: dict[str, Any] | BaseModel) -> bool:
    """Whether the step may run again after a crash; in doubt (a config it cannot read,
    raw or rendered), no."""
    try:
        if not isinstance(config, BaseModel):
            config = executor_cls.parse_config(config)
        return executor_cls.is_idempotent(config)
    except AutomateError:
        return False

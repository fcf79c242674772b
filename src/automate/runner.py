"""Executes workflow runs: the one code path behind the Celery tasks and the embedded worker.

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
outcome right after. An idempotent step's record waits in the pass's
:class:`~automate.journal.Journal` and is written with the item's settlement, in the
batch's one commit: if the worker dies first the step simply runs again, which is what
idempotent means. On resume a succeeded step's output is reused, never recomputed, and a
step still ``running`` means its worker died mid-call: an idempotent step runs again, a
non-idempotent one is dead-lettered as an unknown outcome instead of risking a second
charge, e-mail or ticket.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Prefetch, prefetch_related_objects
from django.utils import timezone
from pydantic import BaseModel

from automate import templating
from automate.journal import Journal
from automate.models import (
    FINISHED_RUN_STATUSES,
    MANUAL_CONNECTOR_KEY,
    RunStatus,
    StepRun,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowStep,
)
from automate.steps.base import StepContext, StepExecutor, StepResult
from automate.steps.registry import NotRegistered, get_step
from automate_core import redaction
from automate_core.conf import settings as automate_settings
from automate_core.outbox.models import OutboxItem
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes

logger = logging.getLogger("automate.runner")

#: Outcome statuses of one pass over a run.
COMPLETED, FILTERED, RETRY, DEAD, LOST, PAUSED = (
    "completed",
    "filtered",
    "retry",
    "dead",
    "lost",
    "paused",
)


@dataclass(frozen=True)
class RunOutcome:
    status: str
    error: AutomateError | None = None
    retry_in: float | None = None


def event_context(item: OutboxItem) -> dict[str, Any]:
    """The ``event`` a template sees, taken from an outbox item."""
    return {
        "id": item.external_id,
        "outbox_id": item.pk,
        "type": item.event_type,
        "connector": item.connector_key,
        "payload": item.payload,
        "received_at": item.created_at.isoformat() if item.created_at else None,
    }


def ensure_runs(item: OutboxItem) -> list[WorkflowRun]:
    """The item's runs: those already made, plus one per matching workflow (idempotent)."""
    return ensure_runs_for([item])[item.pk]


def ensure_runs_for(items: Sequence[OutboxItem]) -> dict[int, list[WorkflowRun]]:
    """:func:`ensure_runs` for a batch, in a fixed number of queries: the existing runs,
    the matching workflows (once per connector and event type) and one bulk INSERT.

    Each run comes with its step history prefetched, and runs of one workflow share one
    ``Workflow`` instance, so :func:`execute_run` reads nothing more before its first step.
    """
    from automate.services import WorkflowService

    by_item: dict[int, dict[int, WorkflowRun]] = {item.pk: {} for item in items}
    workflows: dict[int, Workflow] = {}
    existing = WorkflowRun.objects.filter(outbox_item__in=[i.pk for i in items])
    for run in existing.select_related("workflow"):
        run.workflow = workflows.setdefault(run.workflow_id, run.workflow)
        by_item[run.outbox_item_id][run.workflow_id] = run  # type: ignore[index]
    matches: dict[tuple[str, str], list[Workflow]] = {}
    new: list[WorkflowRun] = []
    for item in items:
        if item.connector_key == MANUAL_CONNECTOR_KEY:
            continue
        kind = (item.connector_key, item.event_type)
        if kind not in matches:
            matches[kind] = WorkflowService().matching_workflows(*kind)
        for workflow in matches[kind]:
            if workflow.pk not in by_item[item.pk]:
                workflow = workflows.setdefault(workflow.pk, workflow)
                run = WorkflowRun(
                    workflow=workflow,
                    workflow_version=workflow.version,
                    outbox_item=item,
                    event=event_context(item),
                    trace_id=item.trace_id,
                )
                by_item[item.pk][workflow.pk] = run
                new.append(run)
    if new:
        for run in _create_runs(new):
            by_item[run.outbox_item_id][run.workflow_id] = run  # type: ignore[index]
    runs = {pk: sorted(found.values(), key=lambda r: r.pk) for pk, found in by_item.items()}
    prefetch_related_objects(
        [run for found in runs.values() for run in found],
        Prefetch("step_runs", queryset=StepRun.objects.order_by("id")),
    )
    return runs


def _create_runs(runs: list[WorkflowRun]) -> list[WorkflowRun]:
    """INSERT the runs at once; if another worker made some first (it held an item before
    us), one by one, taking its row where there is one."""
    try:
        with transaction.atomic():
            WorkflowRun.objects.bulk_create(runs)
    except IntegrityError:
        return [_create_or_get(run) for run in runs]
    if any(run.pk is None for run in runs):  # a backend that cannot return bulk ids
        return [_create_or_get(run) for run in runs]
    return runs


def _create_or_get(run: WorkflowRun) -> WorkflowRun:
    try:
        with transaction.atomic():
            run.pk = None
            run.save(force_insert=True)
    except IntegrityError:
        found = WorkflowRun.objects.get(outbox_item=run.outbox_item, workflow=run.workflow)
        found.workflow = run.workflow
        return found
    return run


def execute_run(
    run: WorkflowRun,
    *,
    keep_going: Callable[[], str | None] | None = None,
    confirm: Callable[[], bool] | None = None,
    journal: Journal | None = None,
    steps: Sequence[WorkflowStep] | None = None,
) -> RunOutcome:
    """Run (or resume) ``run``'s steps in order; record each attempt; never raise.

    ``keep_going`` is asked before each step: ``None`` to go on, ``LOST`` when the item's
    lease was lost to another worker, ``PAUSED`` when the worker is shutting down.
    ``confirm`` is asked inside the transaction that records a non-idempotent step's
    start: False when the item is no longer ours (the step is then not executed).

    With a ``journal`` the records of idempotent steps and the run's status are left in
    it for the caller to write with the item's settlement; without one they are written
    before this returns.
    """
    if journal is None:
        own = Journal()
        ended = execute_run(run, keep_going=keep_going, confirm=confirm, journal=own, steps=steps)
        if ended.status != LOST:
            _write_now(own)
        return ended
    if run.status in FINISHED_RUN_STATUSES:
        done: dict[str, str] = {RunStatus.DEAD: DEAD, RunStatus.FILTERED: FILTERED}
        return RunOutcome(done.get(str(run.status), COMPLETED))
    now = timezone.now()
    run.status, run.started_at = RunStatus.RUNNING, run.started_at or now
    journal.update(run, ["status", "started_at"])
    workflow: Workflow = run.workflow
    context: dict[str, Any] = {
        "event": run.event,
        "steps": {},
        "workflow": {"key": workflow.key, "name": workflow.name, "version": run.workflow_version},
        "trace_id": run.trace_id,
    }
    history = list(run.step_runs.all())
    if steps is None:
        steps = list(workflow.steps_of(run.workflow_version))
    unit = _Unit(run, journal, confirm)
    for step in steps:
        attempts = [sr for sr in history if sr.step_id == step.pk]
        last = attempts[-1] if attempts else None
        if last is not None and last.status in (StepStatus.SUCCEEDED, StepStatus.STOPPED):
            context["steps"][step.name] = {"output": last.output, "status": last.status}
            if last.status == StepStatus.STOPPED:
                return unit.finish(RunStatus.FILTERED)
            continue
        stop = keep_going() if keep_going is not None else None
        if stop is not None:
            return RunOutcome(stop)
        outcome, result = unit.run_step(step, attempts, context)
        if outcome is not None:
            return outcome
        context["steps"][step.name] = {"output": result.output, "status": "succeeded"}
        if result.stop:
            return unit.finish(RunStatus.FILTERED)
    return unit.finish(RunStatus.COMPLETED)


@dataclass
class _Unit:
    """One pass over one run: where its writes go and how its item is confirmed."""

    run: WorkflowRun
    journal: Journal
    confirm: Callable[[], bool] | None

    def run_step(
        self, step: WorkflowStep, attempts: list[StepRun], context: dict[str, Any]
    ) -> tuple[RunOutcome | None, StepResult]:
        run, nothing = self.run, StepResult()
        try:
            executor_cls = get_step(step.type)
        except NotRegistered as exc:
            error = AutomateError(ErrorCodes.CONFIGURATION, str(exc), retryable=False)
            return self.dead(error), nothing
        last = attempts[-1] if attempts else None
        if last is not None and last.status == StepStatus.RUNNING:
            # Its worker died mid-call (or its lease ran out): the outcome is unknown.
            last.status, last.finished_at = StepStatus.INTERRUPTED, timezone.now()
            last.error = {"code": "interrupted", "message": "the worker stopped during this step"}
            self.journal.update(last, ["status", "finished_at", "error"])
            if not _idempotent(executor_cls, step.config):
                error = AutomateError(
                    ErrorCodes.INTERNAL,
                    f"step {step.name!r} was interrupted mid-call and is not idempotent: its "
                    "outcome is unknown, so it is not repeated (check the target, then replay)",
                    retryable=False,
                    details={"step": step.name},
                )
                return self.dead(error), nothing
        budget = [sr for sr in attempts if sr.replay == run.replay_count]
        attempt_no = len(attempts) + 1
        if len(budget) >= step.max_attempts:
            error = AutomateError(
                ErrorCodes.INTERNAL,
                f"step {step.name!r} used all {step.max_attempts} attempts",
                retryable=False,
                details={"step": step.name},
            )
            return self.dead(error), nothing

        record = StepRun(
            run=run, step=step, attempt=attempt_no, replay=run.replay_count,
            status=StepStatus.RUNNING, started_at=timezone.now(),
        )  # fmt: skip
        try:
            rendered = templating.render_value(step.config, context, where="config")
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
        elif not self.record_start(record):
            return RunOutcome(LOST), nothing

        ctx = StepContext(
            step_name=step.name,
            attempt=attempt_no,
            trace_id=run.trace_id,
            timeout=float(step.timeout_seconds),
            provider_ctx=ProviderContext(trace_id=run.trace_id),
            run_id=run.pk,
            template_context=context,
        )
        try:
            result = executor_cls().execute(config, ctx)
        except Exception as exc:
            return self.failed(step, record, _as_automate_error(exc), idempotent, len(budget))

        if not isinstance(result, StepResult):
            result = StepResult(output=result)
        record.status = StepStatus.STOPPED if result.stop else StepStatus.SUCCEEDED
        record.output, record.finished_at = _jsonable(result.output), timezone.now()
        self.journal.update(record, ["status", "output", "finished_at"])
        if not idempotent:
            _write_now(self.journal)  # a known outcome must not become an unknown one
        return None, StepResult(output=record.output, stop=result.stop)

    def record_start(self, record: StepRun) -> bool:
        """Commit a non-idempotent step's ``running`` record, and everything held before
        it, if the item is still ours; False when it is not (or another worker is on this
        very attempt)."""
        try:
            with transaction.atomic():
                if self.confirm is not None and not self.confirm():
                    return False
                self.journal.write()
                record.save(force_insert=True)
        except IntegrityError:
            return False
        self.journal.clear()
        return True

    def failed(
        self,
        step: WorkflowStep,
        record: StepRun,
        error: AutomateError,
        idempotent: bool,
        used: int,
    ) -> tuple[RunOutcome, StepResult]:
        run, nothing = self.run, StepResult()
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
            self.journal.update(run, ["status", "error"])
            outcome = RunOutcome(RETRY, error, backoff_seconds(step, used + 1))
        else:
            outcome = self.dead(error)
        if not idempotent:
            _write_now(self.journal)
        return outcome, nothing

    def finish(self, status: str) -> RunOutcome:
        run = self.run
        run.status, run.finished_at = status, timezone.now()
        if status != RunStatus.DEAD:
            run.error = None
        self.journal.update(run, ["status", "finished_at", "error"])
        return RunOutcome(COMPLETED if status == RunStatus.COMPLETED else FILTERED)

    def dead(self, error: AutomateError) -> RunOutcome:
        run = self.run
        run.status, run.finished_at = RunStatus.DEAD, timezone.now()
        run.error = redaction.redact_data(error.as_dict())
        self.journal.update(run, ["status", "finished_at", "error"])
        return RunOutcome(DEAD, error)


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


def _as_automate_error(exc: BaseException) -> AutomateError:
    if isinstance(exc, AutomateError):
        return exc
    if isinstance(exc, DatabaseError):
        return AutomateError(ErrorCodes.UNAVAILABLE, f"database error: {exc}", retryable=True)
    return AutomateError(ErrorCodes.INTERNAL, f"{type(exc).__name__}: {exc}", retryable=False)


def _error_dict(error: AutomateError, step: WorkflowStep) -> dict[str, Any]:
    record = error.as_dict()
    record["step"] = step.name
    return redaction.redact_data(json.loads(json.dumps(record, default=str)))


def _jsonable(value: Any) -> Any:
    """Secrets redacted, JSON-safe, and cut to ``STEP_MAX_OUTPUT_BYTES`` (never an error:
    a succeeded non-idempotent step must be recorded whatever it returned)."""
    text = json.dumps(value, default=str)
    limit = int(automate_settings.STEP_MAX_OUTPUT_BYTES)
    if len(text) > limit:
        return {"truncated": True, "size": len(text), "preview": redaction.redact(text[:1000])}
    return redaction.redact_data(json.loads(text))

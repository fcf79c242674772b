"""Executes workflow runs: the one code path behind the Celery tasks and the embedded worker.

Retries live in one layer: the outbox item. A step that fails with a retryable error ends
the worker's pass over the item, and the item goes back to the queue
(``queue.fail``) with the step's own exponential backoff; the next claim resumes each
run where it stopped. Nothing here loops or sleeps, and the Celery tasks never retry, so
one failure is never retried by two layers at once (8 task retries x 3 step retries...),
a waiting retry holds no worker thread, and a crashed worker's runs resume the same way
as a failed step's, through the item's lease.

Each step's :class:`StepRun` is committed as ``running`` before the step executes and as
``succeeded`` after; that row is the side-effect record. On resume a succeeded step's
output is reused, never recomputed, and a step still ``running`` means its worker died
mid-call: an idempotent step runs again, a non-idempotent one is dead-lettered as an
unknown outcome instead of risking a second charge, e-mail or ticket.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, IntegrityError
from django.utils import timezone

from automate import templating
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
    from automate.services import WorkflowService

    runs = {run.workflow_id: run for run in item.workflow_runs.select_related("workflow")}
    if item.connector_key != MANUAL_CONNECTOR_KEY:
        for workflow in WorkflowService().matching_workflows(item.connector_key, item.event_type):
            if workflow.pk in runs:
                continue
            try:
                run = WorkflowRun.objects.create(
                    workflow=workflow,
                    workflow_version=workflow.version,
                    outbox_item=item,
                    event=event_context(item),
                    trace_id=item.trace_id,
                )
            except IntegrityError:  # another worker made it first
                run = WorkflowRun.objects.get(outbox_item=item, workflow=workflow)
            runs[workflow.pk] = run
    return sorted(runs.values(), key=lambda r: r.pk)


def execute_run(
    run: WorkflowRun, *, keep_going: Callable[[], str | None] | None = None
) -> RunOutcome:
    """Run (or resume) ``run``'s steps in order; record each attempt; never raise.

    ``keep_going`` is asked before each step: ``None`` to go on, ``LOST`` when the item's
    lease was lost to another worker, ``PAUSED`` when the worker is shutting down.
    """
    if run.status in FINISHED_RUN_STATUSES:
        done: dict[str, str] = {RunStatus.DEAD: DEAD, RunStatus.FILTERED: FILTERED}
        return RunOutcome(done.get(str(run.status), COMPLETED))
    now = timezone.now()
    run.status, run.started_at = RunStatus.RUNNING, run.started_at or now
    run.save(update_fields=["status", "started_at"])
    workflow: Workflow = run.workflow
    context: dict[str, Any] = {
        "event": run.event,
        "steps": {},
        "workflow": {"key": workflow.key, "name": workflow.name, "version": run.workflow_version},
        "trace_id": run.trace_id,
    }
    history = list(run.step_runs.order_by("id"))
    for step in workflow.steps_of(run.workflow_version):
        attempts = [sr for sr in history if sr.step_id == step.pk]
        last = attempts[-1] if attempts else None
        if last is not None and last.status in (StepStatus.SUCCEEDED, StepStatus.STOPPED):
            context["steps"][step.name] = {"output": last.output, "status": last.status}
            if last.status == StepStatus.STOPPED:
                return _finish(run, RunStatus.FILTERED)
            continue
        stop = keep_going() if keep_going is not None else None
        if stop is not None:
            return RunOutcome(stop)
        outcome, result = _run_step(run, step, attempts, context)
        if outcome is not None:
            return outcome
        context["steps"][step.name] = {"output": result.output, "status": "succeeded"}
        if result.stop:
            return _finish(run, RunStatus.FILTERED)
    return _finish(run, RunStatus.COMPLETED)


def _run_step(
    run: WorkflowRun, step: WorkflowStep, attempts: list[StepRun], context: dict[str, Any]
) -> tuple[RunOutcome | None, StepResult]:
    nothing = StepResult()
    try:
        executor_cls = get_step(step.type)
    except NotRegistered as exc:
        error = AutomateError(ErrorCodes.CONFIGURATION, str(exc), retryable=False)
        return _dead(run, error), nothing
    last = attempts[-1] if attempts else None
    if last is not None and last.status == StepStatus.RUNNING:
        # Its worker died mid-call (or its lease ran out): the outcome is unknown.
        last.status, last.finished_at = StepStatus.INTERRUPTED, timezone.now()
        last.error = {"code": "interrupted", "message": "the worker stopped during this step"}
        last.save(update_fields=["status", "finished_at", "error"])
        if not _idempotent(executor_cls, step.config):
            error = AutomateError(
                ErrorCodes.INTERNAL,
                f"step {step.name!r} was interrupted mid-call and is not idempotent: its "
                "outcome is unknown, so it is not repeated (check the target, then replay)",
                retryable=False,
                details={"step": step.name},
            )
            return _dead(run, error), nothing
    budget = [sr for sr in attempts if sr.replay == run.replay_count]
    attempt_no = len(attempts) + 1
    if len(budget) >= step.max_attempts:
        error = AutomateError(
            ErrorCodes.INTERNAL,
            f"step {step.name!r} used all {step.max_attempts} attempts",
            retryable=False,
            details={"step": step.name},
        )
        return _dead(run, error), nothing

    started = timezone.now()
    try:
        rendered = templating.render_value(step.config, context, where="config")
        config = executor_cls.parse_config(rendered, where="config")
    except AutomateError as exc:
        StepRun.objects.create(
            run=run, step=step, attempt=attempt_no, replay=run.replay_count,
            status=StepStatus.FAILED, error=_error_dict(exc, step),
            started_at=started, finished_at=timezone.now(),
        )  # fmt: skip
        return _dead(run, exc), nothing
    try:
        record = StepRun.objects.create(
            run=run, step=step, attempt=attempt_no, replay=run.replay_count,
            status=StepStatus.RUNNING, input=_jsonable(rendered), started_at=started,
        )  # fmt: skip
    except IntegrityError:
        return RunOutcome(LOST), nothing  # another worker is on this very attempt

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
        error = _as_automate_error(exc)
        idempotent = _idempotent(executor_cls, step.config)
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
        record.save(update_fields=["status", "finished_at", "error"])
        logger.warning("step %r of run %s failed: %s", step.name, run.pk, error)
        if error.retryable and len(budget) + 1 < step.max_attempts:
            run.status, run.error = RunStatus.RETRYING, _error_dict(error, step)
            run.save(update_fields=["status", "error"])
            return RunOutcome(RETRY, error, backoff_seconds(step, len(budget) + 1)), nothing
        return _dead(run, error), nothing

    if not isinstance(result, StepResult):
        result = StepResult(output=result)
    record.status = StepStatus.STOPPED if result.stop else StepStatus.SUCCEEDED
    record.output, record.finished_at = _jsonable(result.output), timezone.now()
    record.save(update_fields=["status", "output", "finished_at"])
    return None, StepResult(output=record.output, stop=result.stop)


def backoff_seconds(step: WorkflowStep, attempt: int) -> float:
    """The step's exponential backoff with equal jitter, in [d/2, d] for the attempt's d."""
    delay = min(float(step.max_backoff_seconds), float(step.backoff_seconds) * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _idempotent(executor_cls: type[StepExecutor], config: dict[str, Any]) -> bool:
    try:
        return executor_cls.is_idempotent(executor_cls.parse_config(config))
    except AutomateError:
        return False


def _finish(run: WorkflowRun, status: str) -> RunOutcome:
    run.status, run.finished_at = status, timezone.now()
    if status != RunStatus.DEAD:
        run.error = None
    run.save(update_fields=["status", "finished_at", "error"])
    return RunOutcome(COMPLETED if status == RunStatus.COMPLETED else FILTERED)


def _dead(run: WorkflowRun, error: AutomateError) -> RunOutcome:
    run.status, run.finished_at = RunStatus.DEAD, timezone.now()
    run.error = redaction.redact_data(error.as_dict())
    run.save(update_fields=["status", "finished_at", "error"])
    return RunOutcome(DEAD, error)


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

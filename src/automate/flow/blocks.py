"""How the runner executes the control-flow steps (see docs/control-flow.md).

Each handler takes the pass (:class:`automate.runner.RunExecution`), the workflow's
:class:`~automate.flow.definition.StepTree`, the step, its earlier records at this
iteration path, the path and the template scope; it returns None to go on with the next
step, or how the pass ends.

A ``branch`` or ``for_each`` gets a record of its own, ``running`` while its nested steps
run and ``succeeded`` with its output after the last one; each nested step that runs gets
its own record, with the iteration path of every enclosing ``for_each`` (``"2"``,
``"2.0"``). A pass resumed after a crash or a retry walks the same tree: finished nested
steps give their recorded outputs without running again, so a loop resumes at the first
unfinished iteration and a branch keeps the side it took.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from automate.flow import matching, parking
from automate.flow.models import WaitKind
from automate.models import StepRun, StepStatus, Workflow, WorkflowStep
from automate.outcomes import Outcome, RunOutcome
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

if TYPE_CHECKING:
    from automate.flow.definition import StepTree
    from automate.flow.execution import Execution as RunExecution

__all__ = ["HANDLERS", "failure_context", "open_record", "parse_datetime", "run_on_failure"]

Handler = Callable[
    ["RunExecution", "StepTree", WorkflowStep, list[StepRun], str, dict[str, Any]],
    RunOutcome | None,
]


def open_record(ex: RunExecution, attempts: list[StepRun]) -> StepRun | None:
    """This replay's unfinished record of a control step, to continue, if there is one."""
    last = attempts[-1] if attempts else None
    unfinished = (StepStatus.RUNNING, StepStatus.WAITING)
    if last is not None and last.replay == ex.run.replay_count and last.status in unfinished:
        return last
    return None


def _must_be(value: Any, kind: type | tuple[type, ...], field: str, what: str) -> Any:
    ok = isinstance(value, kind) and not (bool not in _types(kind) and isinstance(value, bool))
    if not ok:
        raise invalid_argument(
            field,
            f"{field} rendered to {type(value).__name__} {str(value)[:50]!r}; it must be {what}",
        )
    return value


def _types(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


# -- branch -------------------------------------------------------------------------------


def run_branch(
    ex: RunExecution,
    tree: StepTree,
    step: WorkflowStep,
    attempts: list[StepRun],
    path: str,
    scope: dict[str, Any],
) -> RunOutcome | None:
    record = open_record(ex, attempts)
    if record is None:
        try:
            record = ex.new_record(step, attempts, path)
        except AutomateError as exc:
            return ex.dead(exc)
        try:
            value = ex.render(step, step.config.get("if"), scope, "config.if")
            _must_be(value, bool, "config.if", "true or false")
        except AutomateError as exc:
            return ex.fail_now(step, record, exc)
        record.input, record.output = {"if": value}, {"took": "then" if value else "else"}
        ex.journal.add(record)
    took = str((record.output or {}).get("took"))
    ended = ex.walk(tree, tree.children(step, took), path, scope)
    if ended is not None:
        return ended
    ex.complete(step, record, {"took": took}, scope)
    return None


# -- for_each -----------------------------------------------------------------------------


def run_for_each(
    ex: RunExecution,
    tree: StepTree,
    step: WorkflowStep,
    attempts: list[StepRun],
    path: str,
    scope: dict[str, Any],
) -> RunOutcome | None:
    config = step.config
    record = open_record(ex, attempts)
    new = record is None
    if record is None:
        try:
            record = ex.new_record(step, attempts, path)
        except AutomateError as exc:
            return ex.dead(exc)
    try:
        # Rendered again on resume: the context is made of recorded outputs, so the
        # list is the same one.
        items = ex.render(step, config.get("items"), scope, "config.items")
        _must_be(items, list, "config.items", "a list")
        limit = int(config.get("max_items", 1000))
        if len(items) > limit:
            raise invalid_argument(
                "config.items",
                f"config.items has {len(items)} items, more than max_items ({limit})",
            )
    except AutomateError as exc:
        return ex.fail_now(step, record, exc)
    if new:
        record.input = {"count": len(items)}
        ex.journal.add(record)
    name = str(config.get("as", "item"))
    children = tree.children(step, "steps")
    results = []
    for index, item in enumerate(items):
        inner = dict(scope)
        inner["steps"] = dict(scope["steps"])
        inner[name] = item
        inner["loop"] = {
            "index": index,
            "first": index == 0,
            "last": index == len(items) - 1,
            "length": len(items),
        }
        ended = ex.walk(tree, children, f"{path}.{index}" if path else str(index), inner)
        if ended is not None:
            return ended
        results.append(
            {
                key: value["output"]
                for key, value in inner["steps"].items()
                if scope["steps"].get(key) is not value
            }
        )
    ex.complete(step, record, {"count": len(items), "results": results}, scope)
    return None


# -- steps that park: delay, wait_for_event, workflow ------------------------------------


def _resume_or_open(
    ex: RunExecution,
    step: WorkflowStep,
    attempts: list[StepRun],
    path: str,
    scope: dict[str, Any],
) -> tuple[StepRun | None, RunOutcome | None]:
    """The start of a step that parks: ``(record, None)`` with a new record to park on,
    or ``(None, how the step ended)`` when its waiting record resumed (None: go on) or no
    record could be made (the run died)."""
    record = open_record(ex, attempts)
    if record is not None and record.status == StepStatus.WAITING:
        return None, parking.resume(ex, step, record, scope)
    try:
        return ex.new_record(step, attempts, path), None
    except AutomateError as exc:
        return None, ex.dead(exc)


# -- delay --------------------------------------------------------------------------------


def run_delay(
    ex: RunExecution,
    tree: StepTree,
    step: WorkflowStep,
    attempts: list[StepRun],
    path: str,
    scope: dict[str, Any],
) -> RunOutcome | None:
    record, ended = _resume_or_open(ex, step, attempts, path, scope)
    if record is None:
        return ended
    now = timezone.now()
    try:
        until = _delay_until(ex, step, scope, now)
    except AutomateError as exc:
        return ex.fail_now(step, record, exc)
    record.input = {"until": until.isoformat()}
    if until <= now:
        ex.complete(step, record, {"until": until.isoformat(), "waited": False}, scope)
        return None
    record.status, record.output = StepStatus.WAITING, {"until": until.isoformat()}
    ex.journal.add(record)
    parking.add_wait(ex, record, kind=WaitKind.DELAY, due_at=until)
    return ex.park()


def _delay_until(
    ex: RunExecution, step: WorkflowStep, scope: dict[str, Any], now: datetime
) -> datetime:
    config = step.config
    if config.get("seconds") is not None:
        seconds = ex.render(step, config["seconds"], scope, "config.seconds")
        _must_be(seconds, (int, float), "config.seconds", "a number of seconds")
        if not 0 <= seconds <= 10 * 365 * 86400:
            raise invalid_argument(
                "config.seconds", f"config.seconds is {seconds}; it must be 0 to ten years"
            )
        return now + timedelta(seconds=seconds)
    return parse_datetime(
        ex.render(step, config.get("until"), scope, "config.until"), "config.until"
    )


def parse_datetime(value: Any, field: str) -> datetime:
    """An ISO 8601 date and time (naive ones are UTC), or INVALID_ARGUMENT naming ``field``."""
    if isinstance(value, datetime):
        parsed = value
    else:
        _must_be(value, str, field, "an ISO 8601 date and time")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise invalid_argument(
                field, f"{field} rendered to {value[:50]!r}; it must be an ISO 8601 date and time"
            ) from None
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


# -- wait_for_event -----------------------------------------------------------------------


def run_wait_for_event(
    ex: RunExecution,
    tree: StepTree,
    step: WorkflowStep,
    attempts: list[StepRun],
    path: str,
    scope: dict[str, Any],
) -> RunOutcome | None:
    record, ended = _resume_or_open(ex, step, attempts, path, scope)
    if record is None:
        return ended
    config = step.config
    try:
        match = {
            key: ex.render(step, value, scope, f"config.match.{key}")
            for key, value in (config.get("match") or {}).items()
        }
    except AutomateError as exc:
        return ex.fail_now(step, record, exc)
    connector, event = str(config["connector"]), str(config["event"])
    timeout = config.get("timeout_seconds")
    began = record.started_at or timezone.now()
    due = began + timedelta(seconds=float(timeout)) if timeout else None
    record.input = {
        "connector": connector,
        "event": event,
        "match": match,
        "timeout_seconds": timeout,
    }
    record.status = StepStatus.WAITING
    record.output = {"until": due.isoformat() if due else None, "match": match}
    ex.journal.add(record)
    parking.add_wait(
        ex,
        record,
        kind=WaitKind.EVENT,
        due_at=due,
        timer_at=timezone.now(),  # first, look for events that came while parking
        connector_key=connector,
        event_type=event,
        match_key=matching.match_key(connector, event, match),
        match=match,
        created_at=began,
    )
    return ex.park()


# -- workflow (child run) -----------------------------------------------------------------


def run_child_workflow(
    ex: RunExecution,
    tree: StepTree,
    step: WorkflowStep,
    attempts: list[StepRun],
    path: str,
    scope: dict[str, Any],
) -> RunOutcome | None:
    record, ended = _resume_or_open(ex, step, attempts, path, scope)
    if record is None:
        return ended
    config = step.config
    try:
        payload = ex.render(step, config.get("payload") or {}, scope, "config.payload")
        _must_be(payload, dict, "config.payload", "an object")
        workflow = Workflow.objects.filter(key=config.get("workflow")).first()
        if workflow is None:
            raise AutomateError(
                ErrorCodes.NOT_FOUND,
                f"no workflow with key {config.get('workflow')!r}",
                retryable=False,
                details={"field": "config.workflow"},
            )
    except AutomateError as exc:
        return ex.fail_now(step, record, exc)
    run = ex.run
    key = f"child:{run.pk}:{step.pk}:{path}:{run.replay_count}:{record.attempt}"
    child = parking.start_child(ex, workflow, payload, key)
    record.input = {
        "workflow": workflow.key,
        "payload": payload,
        "wait": config.get("wait", True),
        "child_key": key,
    }
    started = {"workflow": workflow.key, "child_key": key}
    if not config.get("wait", True):
        ex.complete(step, record, {**started, "status": "started"}, scope)
        return None
    record.status, record.output = StepStatus.WAITING, started
    ex.journal.add(record)
    parking.add_wait(ex, record, kind=WaitKind.CHILD, child_run=child)
    return ex.park()


# -- on_failure ---------------------------------------------------------------------------


def failure_context(step: str | None, code: str, message: str) -> dict[str, Any]:
    """What ``{{ failure }}`` is in ``on_failure`` steps: the step the run died on (None
    when not known) and its error's code and message."""
    return {"step": step, "error": {"code": code, "message": message}}


def run_on_failure(ex: RunExecution, tree: StepTree, failure: dict[str, Any]) -> bool:
    """Run the workflow's ``on_failure`` steps once, after the run died; ``failure`` is
    what they see as ``{{ failure }}`` (:func:`failure_context`). True when the item was
    lost meanwhile (the steps left are for its new holder).

    A step of them that fails is recorded and the next one runs. On a later pass (a
    crash, a lost lease) a step that already has a record in this replay is not run
    again. The caller marks the run dead again with its own error where it must.
    """
    scope = dict(ex.context)
    scope["failure"] = failure
    for step in tree.on_failure:
        attempts = ex.attempts(step, "")
        if any(sr.replay == ex.run.replay_count for sr in attempts):
            continue
        handler = HANDLERS.get(step.type)
        if handler is not None:
            outcome = handler(ex, tree, step, attempts, "", scope)
        else:
            outcome, _ = ex.run_step(step, attempts, "", scope)
        if outcome is not None and outcome.status == Outcome.LOST:
            return True
    return False


HANDLERS: dict[str, Handler] = {
    "branch": run_branch,
    "for_each": run_for_each,
    "delay": run_delay,
    "wait_for_event": run_wait_for_event,
    "workflow": run_child_workflow,
}

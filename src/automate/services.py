"""``WorkflowService``: create, version, enable and run workflows.

Every step is validated against its executor's config schema, and every template in it
is parsed and checked, before anything is saved; the first problem is an INVALID_ARGUMENT
``AutomateError`` naming the step and the field::

    WorkflowService().create_workflow(
        name="Triage",
        trigger={"connector": "github", "events": ["issues.*"]},
        steps=[{"name": "Open ticket", "type": "connector_action",
                "config": {"profile": "jira", "action": "create_issue",
                           "input": {"summary": "{{ event.payload.issue.title }}"}}}],
    )

A workflow without a trigger runs only through :meth:`WorkflowService.run_workflow` or the
API. Runs go through the outbox like webhooks, so they retry, dead-letter and replay alike:
``run_workflow`` writes the outbox item and its run (:mod:`automate.runs`) in one
transaction and sends :data:`automate.signals.event_accepted` once it has committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.text import slugify

from automate import runs, signals, templating
from automate.conf import settings as app_settings
from automate.flow import definition, parking
from automate.flow.definition import ON_FAILURE
from automate.models import MANUAL_CONNECTOR_KEY, Workflow, WorkflowRun
from automate.runs import Trigger
from automate.schedules.fire import set_schedule
from automate.schedules.spec import ScheduleSpec, is_schedule_trigger, parse_schedule
from automate.steps.registry import NotRegistered, get_step, step_types
from automate.templating import CONTEXT_NAMES
from automate_core.outbox import queue
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument
from automate_core.tracing import get_trace_id, new_trace_id

#: ``update_workflow(trigger=UNCHANGED)`` (the default) keeps the trigger; None removes it.
UNCHANGED: Any = object()
STEP_KEYS = frozenset({"name", "type", "config", "retry"})
RETRY_KEYS = {
    "max_attempts": "max_attempts",
    "backoff_seconds": "backoff_seconds",
    "max_backoff_seconds": "max_backoff_seconds",
    "timeout_seconds": "timeout_seconds",
}


class WorkflowService:
    """The public way to define and start workflows (the admin and the API use it too)."""

    # -- Definition ---------------------------------------------------------------------

    def create_workflow(
        self,
        name: str,
        steps: Sequence[Mapping[str, Any]],
        trigger: Mapping[str, Any] | str | None = None,
        *,
        key: str | None = None,
        description: str = "",
        enabled: bool = True,
        on_failure: Sequence[Mapping[str, Any]] | None = None,
    ) -> Workflow:
        """Validate everything, then save the workflow and its version-1 steps.

        ``on_failure`` steps run once when a run dies (see docs/control-flow.md).
        """
        if not isinstance(name, str) or not name.strip():
            raise _invalid("name must be a non-empty string", "name")
        key = key or slugify(name)[:100]
        if not key:
            raise _invalid("key: give a name with letters or digits, or a key", "key")
        parsed_trigger = parse_trigger(trigger)
        rows = self.validate_steps(steps, on_failure=on_failure, key=key)
        try:
            with transaction.atomic():
                workflow = Workflow.objects.create(
                    name=name.strip()[:200],
                    key=key,
                    description=description,
                    enabled=enabled,
                    trigger_connector=_connector(parsed_trigger),
                    trigger_event_types=_events(parsed_trigger),
                    version=1,
                )
                self._save_steps(workflow, 1, rows)
                if isinstance(parsed_trigger, ScheduleSpec):
                    set_schedule(workflow, parsed_trigger)
        except IntegrityError:
            raise AutomateError(
                ErrorCodes.ALREADY_EXISTS,
                f"a workflow with key {key!r} already exists; pass another key",
                retryable=False,
                details={"field": "key"},
            ) from None
        return workflow

    def update_workflow(
        self,
        workflow: Workflow,
        *,
        name: str | None = None,
        steps: Sequence[Mapping[str, Any]] | None = None,
        trigger: Any = UNCHANGED,
        description: str | None = None,
        enabled: bool | None = None,
        on_failure: Sequence[Mapping[str, Any]] | None = None,
    ) -> Workflow:
        """Change a workflow; new ``steps`` become a new version, runs keep their own.

        ``on_failure`` replaces the on_failure steps (with ``steps``); None keeps them.
        """
        rows = None
        if steps is not None:
            if on_failure is None:  # new steps keep the current on_failure steps
                on_failure = definition.on_failure_steps(workflow)
            rows = self.validate_steps(steps, on_failure=on_failure, key=workflow.key)
        parsed = parse_trigger(trigger) if trigger is not UNCHANGED else None
        with transaction.atomic():
            # NO KEY UPDATE: serialises the updates of this workflow, yet leaves alone a
            # tick being fired, whose rows' foreign keys take KEY SHARE locks on this row
            # while it holds the schedule row the save below updates (FOR UPDATE would
            # make the two wait for each other: a deadlock). See schedules.fire.
            locked = Workflow.objects.select_for_update(no_key=True).get(pk=workflow.pk)
            if name is not None:
                if not name.strip():
                    raise _invalid("name must be a non-empty string", "name")
                locked.name = name.strip()[:200]
            if description is not None:
                locked.description = description
            if enabled is not None:
                locked.enabled = enabled
            if trigger is not UNCHANGED:
                locked.trigger_connector = _connector(parsed)
                locked.trigger_event_types = _events(parsed)
            if rows is not None:
                locked.version += 1
                self._save_steps(locked, locked.version, rows)
            locked.save()  # the schedule follows ``enabled`` (schedules.fire.follow_enabled)
            if trigger is not UNCHANGED:  # a new trigger replaces the schedule or removes it
                set_schedule(locked, parsed if isinstance(parsed, ScheduleSpec) else None)
        return locked

    def enable(self, workflow: Workflow) -> Workflow:
        return self.update_workflow(workflow, enabled=True)

    def disable(self, workflow: Workflow) -> Workflow:
        """Stop starting new runs; runs already started finish on their version."""
        return self.update_workflow(workflow, enabled=False)

    def validate_steps(
        self, steps: Any, *, on_failure: Any = None, key: str | None = None
    ) -> list[dict[str, Any]]:
        """Check every step, nested and ``on_failure`` ones included; return the rows to
        save (nested rows under ``"children"``). Nothing is written."""
        if not isinstance(steps, list | tuple) or not steps:
            raise _invalid("steps must be a non-empty list", "steps")
        if on_failure is not None and not isinstance(on_failure, list | tuple):
            raise _invalid("on_failure must be a list of steps", "on_failure")
        seen: set[str] = set()
        rows = [
            self._validate_step(f"steps[{i}]", step, seen, CONTEXT_NAMES, 0)
            for i, step in enumerate(steps)
        ]
        names = CONTEXT_NAMES | {"failure"}
        for i, step in enumerate(on_failure or ()):
            row = self._validate_step(f"on_failure[{i}]", step, seen, names, 0)
            definition.check_no_parking(row, f"on_failure[{i}]")
            rows.append(row | {"block": ON_FAILURE})
        definition.check_children(rows, key)
        return rows

    def _validate_step(
        self, where: str, step: Any, seen: set[str], names: frozenset[str], depth: int
    ) -> dict[str, Any]:
        if not isinstance(step, Mapping):
            raise _invalid(f"{where} must be an object with name, type and config", where)
        label = f"step {step.get('name')!r}" if isinstance(step.get("name"), str) else where
        unknown = set(step) - STEP_KEYS
        if unknown:
            raise _invalid(f"{label}: unknown key(s) {', '.join(sorted(unknown))}", where, step)
        name = step.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise _invalid(f"{where}.name must be a non-empty string (max 200)", f"{where}.name")
        if name in seen:
            raise _invalid(f"{label}: step names must be unique", f"{where}.name", step)
        seen.add(name)
        step_type = step.get("type")
        try:
            executor = get_step(step_type) if isinstance(step_type, str) else None
        except NotRegistered:
            executor = None
        if executor is None:
            raise _invalid(
                f"{label}: unknown step type {step_type!r} (registered: "
                f"{', '.join(step_types()) or 'none'})",
                f"{where}.type",
                step,
            )
        config = step.get("config", {})
        blocks: tuple[str, ...] = getattr(executor, "blocks", ())
        try:
            own = config
            if isinstance(config, Mapping):
                own = {k: v for k, v in config.items() if k not in blocks}
            templating.validate_value(own, where="config", names=names)
            parsed = executor.parse_config(config, where="config")
            executor.check(parsed, where="config")
        except AutomateError as exc:
            field_name = exc.details.get("field", "config")
            raise _invalid(f"{label}: {exc.message}", f"{where}.{field_name}", step) from None
        children: dict[str, list[dict[str, Any]]] = {}
        if blocks:
            definition.check_depth(depth + 1, f"{where}.config", label)
            inner = names | executor.inner_names(parsed)  # type: ignore[attr-defined]
            for block in blocks:
                children[block] = [
                    self._validate_step(f"{where}.config.{block}[{i}]", s, seen, inner, depth + 1)
                    for i, s in enumerate(config.get(block) or ())
                ]
        row = {"name": name, "type": step_type, "config": dict(config)}
        row |= _retry_policy(step.get("retry"), where, label)
        return row | {"children": children}

    @staticmethod
    def _save_steps(workflow: Workflow, version: int, rows: list[dict[str, Any]]) -> None:
        definition.save_rows(workflow, version, rows)

    # -- Running ------------------------------------------------------------------------

    def run_workflow(
        self, workflow: Workflow, event: Mapping[str, Any] | None = None
    ) -> WorkflowRun:
        """Start ``workflow`` for ``event`` (a payload dict, or ``{"payload": ..., "type": ...}``).

        The run is queued like a webhook's (a worker executes it) and returned at once.
        """
        event = dict(event or {})
        if "payload" in event:
            payload, event_type = event["payload"], event.get("type") or ""
        else:
            payload, event_type = event, ""
        trace_id = get_trace_id() or new_trace_id()
        with transaction.atomic():
            item = queue.enqueue(
                MANUAL_CONNECTOR_KEY,
                event_type=str(event_type or "manual"),
                payload=payload,
                trace_id=trace_id,
            ).item
            run = runs.new_run(workflow, item)
            run.save(force_insert=True)
            transaction.on_commit(
                lambda: signals.event_accepted.send(sender=MANUAL_CONNECTOR_KEY, item=item)
            )
        return run

    def cancel_run(self, run: WorkflowRun) -> WorkflowRun:
        """End a pending, waiting or running run as ``cancelled``: at once when no worker
        holds it, else at its next step boundary (within
        ``AUTOMATE["FLOW_CANCEL_CHECK_SECONDS"]``); its unfinished child runs too. A
        cancelled waiting run is never resumed; a finished run is returned unchanged."""
        return parking.cancel_run(run)

    def matching_workflows(self, connector_key: str, event_type: str) -> list[Workflow]:
        """Enabled workflows whose trigger matches an event (what the worker runs for it)."""
        return runs.matching_workflows(connector_key, event_type)


def parse_trigger(trigger: Mapping[str, Any] | str | None) -> Trigger | ScheduleSpec | None:
    """``"github"``, ``{"connector": "github", "events": ["push", "issues.*"]}``, or a
    schedule: ``{"schedule": "0 9 * * 1-5", "timezone": "Europe/Paris"}``, ``{"every": 30}``
    (see :mod:`automate.schedules.spec`). ``{"connector": "app"}`` subscribes to
    :func:`automate.emit`'s events: a source needs no connection profile."""
    if trigger is None:
        return None
    if isinstance(trigger, str):
        trigger = {"connector": trigger}
    if not isinstance(trigger, Mapping):
        raise _invalid("trigger must be a connection key or an object", "trigger")
    if is_schedule_trigger(trigger):
        return parse_schedule(trigger)
    unknown = set(trigger) - {"connector", "events"}
    if unknown:
        raise _invalid(
            f"trigger: unknown key(s) {', '.join(sorted(unknown))} (a trigger is "
            '{"connector", "events"}, {"schedule", "timezone"} or {"every"})',
            "trigger",
        )
    connector = trigger.get("connector")
    if not isinstance(connector, str) or not connector or connector.startswith("_"):
        raise _invalid("trigger.connector must be a connection key", "trigger.connector")
    events = trigger.get("events") or []
    if isinstance(events, str):
        events = [events]
    if not isinstance(events, Iterable) or not all(isinstance(e, str) and e for e in events):
        raise _invalid("trigger.events must be a list of event types", "trigger.events")
    return Trigger(connector, tuple(events))


def _connector(trigger: Trigger | ScheduleSpec | None) -> str:
    """A schedule's workflow has no trigger connector: its ticks' runs are made with them."""
    return trigger.connector if isinstance(trigger, Trigger) else ""


def _events(trigger: Trigger | ScheduleSpec | None) -> list[str]:
    return list(trigger.events) if isinstance(trigger, Trigger) else []


def _retry_policy(value: Any, where: str, label: str) -> dict[str, Any]:
    policy = {
        "max_attempts": app_settings.STEP_MAX_ATTEMPTS,
        "backoff_seconds": app_settings.STEP_BACKOFF_SECONDS,
        "max_backoff_seconds": app_settings.STEP_BACKOFF_MAX_SECONDS,
        "timeout_seconds": app_settings.STEP_TIMEOUT_SECONDS,
    }
    if value is None:
        return policy
    if not isinstance(value, Mapping):
        raise _invalid(f"{label}: retry must be an object", f"{where}.retry")
    for key, number in value.items():
        if key not in RETRY_KEYS:
            raise _invalid(f"{label}: unknown retry setting {key!r}", f"{where}.retry.{key}")
        valid = isinstance(number, int | float) and not isinstance(number, bool) and number > 0
        if not valid or (key == "max_attempts" and not isinstance(number, int)):
            raise _invalid(
                f"{label}: retry.{key} must be a positive number", f"{where}.retry.{key}"
            )
        policy[RETRY_KEYS[key]] = number
    return policy


def _invalid(message: str, field: str, step: Any = None) -> AutomateError:
    if isinstance(step, Mapping) and isinstance(step.get("name"), str):
        return invalid_argument(field, message, step=step["name"])
    return invalid_argument(field, message)

"""Step builders and run starters shared by the control-flow tests."""

from __future__ import annotations

from automate.models import StepRun
from automate.services import WorkflowService


def action(name, act="echo", input_data=None, **retry):
    step = {
        "name": name,
        "type": "connector_action",
        "config": {"profile": "recorder", "action": act, "input": input_data or {}},
    }
    if retry:
        step["retry"] = retry
    return step


def start(steps, payload=None, name="W", **kwargs):
    wf = WorkflowService().create_workflow(name=name, steps=steps, **kwargs)
    return WorkflowService().run_workflow(wf, {"payload": payload or {}, "type": "t"})


def records(run):
    """(step, path, attempt, status) of each record, oldest first."""
    return list(
        StepRun.objects.filter(run=run)
        .order_by("id")
        .values_list("step__name", "path", "attempt", "status")
    )

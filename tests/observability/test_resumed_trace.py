"""A run that a ``wait_for_event`` reply resumes stays in its own trace.

The reply's outbox item carries the resumed run (its claims execute it), and that item
is in the reply's trace. The run's log lines and spans keep the trace of the event that
started it; the reply is linked (a span link, ``resumed_by_trace_id`` in the run line).
"""

from __future__ import annotations

import logging

import pytest

from automate.models import RunStatus, WorkflowRun
from automate.services import WorkflowService
from automate.steps import StepContext, StepExecutor, StepResult
from automate.steps.base import StrictConfig
from automate.steps.registry import steps as step_registry
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from automate_core.tracing import get_trace_id, trace
from tests.observability.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)

#: The run's trace and the span that started it; the reply's.
RUN_TRACE, RUN_SPAN = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
REPLY_TRACE, REPLY_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


class TraceProbe(StepExecutor):
    """Outputs the trace id bound while it runs: what ``%(trace_id)s`` logs would show."""

    key = "trace_probe"
    config_model = StrictConfig
    idempotent = True

    def execute(self, config: StrictConfig, ctx: StepContext) -> StepResult:  # type: ignore[override]
        return StepResult(output={"trace_id": get_trace_id()})


@pytest.fixture(autouse=True)
def probe():
    step_registry.register(TraceProbe)
    yield
    step_registry.unregister("trace_probe")


def parked_run() -> WorkflowRun:
    """A run started in RUN_TRACE (from RUN_SPAN), parked on a ``customer.replied``."""
    workflow = WorkflowService().create_workflow(
        name="Ticket",
        steps=[
            {
                "name": "Reply",
                "type": "wait_for_event",
                "config": {
                    "connector": "shop",
                    "event": "customer.replied",
                    "match": {"ticket.id": "{{ event.payload.ticket }}"},
                },
            },
            {"name": "Probe", "type": "trace_probe", "config": {}},
        ],
    )
    with trace(RUN_TRACE):
        run = WorkflowService().run_workflow(workflow, {"ticket": 7})
    traced(run.outbox_item_id, RUN_TRACE, RUN_SPAN)
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    return run


def reply() -> None:
    """The reply, in a trace of its own, resuming the run."""
    item = queue.enqueue(
        "shop",
        event_type="customer.replied",
        payload={"ticket": {"id": 7}},
        trace_id=REPLY_TRACE,
    ).item
    traced(item.pk, REPLY_TRACE, REPLY_SPAN)
    drain()


def traced(item_id: int, trace_id: str, span_id: str) -> None:
    """Give an item the traceparent a traced webhook request would have stored."""
    OutboxItem.objects.filter(pk=item_id).update(trace_context=f"00-{trace_id}-{span_id}-01")


def test_resumed_run__logs_under_its_own_trace_id_and_names_the_reply(caplog):
    caplog.set_level(logging.INFO, logger="automate.events")
    run = parked_run()
    reply()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.resume_item.trace_id == REPLY_TRACE  # the reply's item carried it
    # What the steps and every logger with the TraceIdFilter see while the run goes on.
    assert run.step_runs.get(step__name="Probe").output == {"trace_id": RUN_TRACE}
    [line] = [r for r in caplog.records if r.name == "automate.events" and r.outcome == "completed"]
    assert (line.trace_id, line.resumed_by_trace_id) == (RUN_TRACE, REPLY_TRACE)
    assert f"resumed_by_trace_id={REPLY_TRACE}" in line.getMessage()
    # The parking pass, carried by the run's own item, names no other trace.
    [parked] = [r for r in caplog.records if getattr(r, "outcome", None) == "waiting"]
    assert "resumed_by_trace_id" not in parked.getMessage()


def test_resumed_run__its_span_is_in_its_own_trace_and_links_the_reply(exporter):
    parked_run()
    reply()
    finished = exporter.get_finished_spans()
    runs = [s for s in finished if s.name == "automate.run"]
    assert [s.attributes["automate.outcome"] for s in runs] == ["waiting", "completed"]
    for span in runs:  # both passes: children of the span that started the run
        assert format(span.context.trace_id, "032x") == RUN_TRACE
        assert format(span.parent.span_id, "016x") == RUN_SPAN
    parking, resumed = runs
    assert not parking.links
    [link] = resumed.links
    assert format(link.context.trace_id, "032x") == REPLY_TRACE
    assert format(link.context.span_id, "016x") == REPLY_SPAN
    [probe] = [s for s in finished if s.name == "automate.step trace_probe"]
    assert probe.parent.span_id == resumed.context.span_id
    # The reply's own pass (its claim) stays in the reply's trace.
    claims = [s for s in finished if s.name == "automate.claim"]
    assert {format(s.context.trace_id, "032x") for s in claims} == {RUN_TRACE, REPLY_TRACE}

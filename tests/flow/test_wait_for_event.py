"""``wait_for_event``: parked until a later event of that connector and type whose
payload matches; timeouts; the index lookup; events that come while the run parks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automate import dispatch
from automate.flow import matching
from automate.flow.models import RunWait
from automate.models import RESUME_CONNECTOR_KEY, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from automate_core.outbox import queue
from automate_core.providers.errors import AutomateError
from tests.flow.helpers import action, records, start

pytestmark = pytest.mark.django_db


def wait_step(name="Reply", **extra):
    config = {
        "connector": "shop",
        "event": "customer.replied",
        "match": {"ticket.id": "{{ event.payload.ticket }}"},
        **extra,
    }
    return {"name": name, "type": "wait_for_event", "config": config}


def emit(payload, event_type="customer.replied", connector="shop", **fields):
    item = queue.enqueue(connector, event_type=event_type, payload=payload, trace_id="t").item
    if fields:
        OutboxItem.objects.filter(pk=item.pk).update(**fields)
    return item


def test_wait__the_first_later_matching_event_resumes_the_run(drain, recorder_calls):
    own = WorkflowService().create_workflow(
        name="Replies", trigger={"connector": "shop", "events": ["customer.*"]},
        steps=[action("Log", input_data={"t": "{{ event.payload.ticket.id }}"})],
    )  # fmt: skip
    run = start(
        [
            wait_step(timeout_seconds=3600),
            action("Then", input_data={"r": "{{ steps.Reply.output }}"}),
        ],
        {"ticket": 7},
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    wait = RunWait.objects.get(run=run)
    assert (wait.kind, wait.status, wait.match) == ("event", "waiting", {"ticket.id": 7})
    # Its first timer found no event and made way for the timeout timer.
    assert wait.timer.available_at > timezone.now() + timedelta(seconds=3500)

    emit({"ticket": {"id": 8}, "text": "other"})  # another ticket
    emit({"ticket": {"id": 7}}, event_type="customer.left")  # another type
    emit({"ticket": {"id": 7}}, connector="crm")  # another connector
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING

    emit({"ticket": {"id": 7}, "text": "thanks"})
    emit({"ticket": {"id": 7}, "text": "again"})  # later: the wait is won already
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    expected = {
        "event": {"type": "customer.replied", "payload": {"ticket": {"id": 7}, "text": "thanks"}}
    }
    assert run.step_runs.get(step__name="Reply").output == expected
    assert recorder_calls.count(("echo", {"r": expected})) == 1
    # The events started their own workflow as usual (three of type customer.*).
    assert WorkflowRun.objects.filter(workflow=own).count() == 4
    wait.refresh_from_db()
    # The reply itself resumed the run, in its own claim: no second outbox item.
    assert wait.status == "matched" and wait.resolved_by == run.resume_item
    assert (run.resume_item.payload, run.resume_item.status) == (
        {"ticket": {"id": 7}, "text": "thanks"},
        "done",
    )
    assert not OutboxItem.objects.filter(
        connector_key=RESUME_CONNECTOR_KEY, event_type="event.matched"
    ).exists()


@pytest.mark.parametrize("on_timeout", ["continue", "fail"])
def test_wait__timeout(drain, on_timeout):
    run = start(
        [wait_step(timeout_seconds=60, on_timeout=on_timeout), action("Then")], {"ticket": 1}
    )
    drain()
    wait = RunWait.objects.get(run=run)
    RunWait.objects.filter(pk=wait.pk).update(due_at=timezone.now() - timedelta(seconds=1))
    OutboxItem.objects.filter(pk=wait.timer_id).update(available_at=timezone.now())
    drain()
    run.refresh_from_db()
    wait.refresh_from_db()
    assert wait.status == "timed_out"
    if on_timeout == "continue":
        assert run.status == RunStatus.COMPLETED
        assert run.step_runs.get(step__name="Reply").output == {"timed_out": True}
    else:
        assert run.status == RunStatus.DEAD
        assert run.error["code"] == "timeout"
        assert [r[0] for r in records(run)] == ["Reply"]
    # A matching event after the timeout resumes nothing.
    emit({"ticket": {"id": 1}})
    drain()
    assert StepRun.objects.filter(run=run).count() == (2 if on_timeout == "continue" else 1)


def test_wait__an_event_that_came_while_the_run_parked_is_not_missed(drain):
    """The event was processed before the wait was committed (so it could not see it);
    the wait's first timer finds it."""
    run = start([wait_step(), action("Then")], {"ticket": 3})
    dispatch.process_batch(dispatch.claim())  # parks; its first timer is due, not yet run
    assert RunWait.objects.get(run=run).status == "waiting"
    emit({"ticket": {"id": 3}}, status="done")  # processed already, elsewhere
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.step_runs.get(step__name="Reply").output["event"]["payload"] == {"ticket": {"id": 3}}


def test_wait__an_event_from_before_the_wait_began_does_not_match(drain):
    emit({"ticket": {"id": 4}}, status="done", created_at=timezone.now() - timedelta(hours=1))
    run = start([wait_step()], {"ticket": 4})
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    assert RunWait.objects.get(run=run).timer is None  # no timeout: no timer left


def test_wait__a_cancelled_wait_is_not_resumed_and_the_event_still_runs_its_workflows(
    drain, recorder_calls
):
    WorkflowService().create_workflow(name="Own", trigger="shop", steps=[action("Own")])
    run = start([wait_step(), action("Then")], {"ticket": 5})
    drain()
    WorkflowService().cancel_run(run)
    emit({"ticket": {"id": 5}})
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    assert RunWait.objects.get(run=run).status == "cancelled"
    assert [r[0] for r in records(run)] == ["Reply"]
    assert len(recorder_calls) == 1  # the event's own workflow


def test_wait__an_event_looks_its_waits_up_in_a_fixed_number_of_queries(drain):
    def waiting_runs(n, offset):
        for i in range(n):
            start([wait_step()], {"ticket": offset + i}, name=f"W{offset + i}")
        drain()

    def queries_for_one_event(ticket):
        event = emit({"ticket": {"id": ticket}})
        with CaptureQueriesContext(connection) as ctx:
            won = matching.wake_waiters([event])
        return won.waits, len(ctx.captured_queries)

    waiting_runs(3, 0)
    few = queries_for_one_event(1)
    waiting_runs(60, 100)
    many = queries_for_one_event(150)
    assert len(few[0]) == len(many[0]) == 1
    assert few[1] == many[1]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"connector": "{{ event.payload.c }}"}, "config.connector"),
        ({"match": {"": "x"}}, "config.match"),
        ({"match": {"a..b": "x"}}, "config.match"),
        ({"timeout_seconds": 0}, "config.timeout_seconds"),
        ({"on_timeout": "retry"}, "config.on_timeout"),
        ({"match": {"id": "{{ nothing }}"}}, "config.match.id"),
    ],
)
def test_wait__bad_configs_are_refused_at_create(extra, field):
    with pytest.raises(AutomateError) as exc:
        WorkflowService().create_workflow(name="X", steps=[wait_step(**extra)])
    assert exc.value.details["field"] == f"steps[0].{field}"


def test_wait__a_batch_of_first_timers_finds_the_events_that_came_meanwhile_each_its_own(drain):
    runs = [start([wait_step(), action("Then")], {"ticket": n}, name=f"M{n}") for n in range(3)]
    dispatch.process_batch(dispatch.claim())  # parks all three; their first timers are due
    waits = {w.run_id: w for w in RunWait.objects.all()}
    # Processed already, elsewhere, before the waits were committed: only the timers look.
    emit({"ticket": {"id": 0}}, status="done")
    emit({"ticket": {"id": 2}}, status="done")
    # Ticket 1's event is from before its wait began, though inside the batch's window.
    emit(
        {"ticket": {"id": 1}},
        status="done",
        created_at=waits[runs[1].pk].created_at - timedelta(microseconds=1),
    )
    RunWait.objects.filter(pk=waits[runs[0].pk].pk).update(
        created_at=waits[runs[1].pk].created_at - timedelta(seconds=1)
    )  # the batch's window starts before ticket 1's event
    dispatch.process_batch(dispatch.claim())  # the three first timers, in one batch
    drain()
    statuses = {
        run.pk: run.status for run in WorkflowRun.objects.filter(pk__in=[r.pk for r in runs])
    }
    assert statuses == {
        runs[0].pk: RunStatus.COMPLETED,
        runs[1].pk: RunStatus.WAITING,
        runs[2].pk: RunStatus.COMPLETED,
    }
    assert RunWait.objects.get(run=runs[2]).event["payload"] == {"ticket": {"id": 2}}


def test_wait__a_batch_of_first_timers_looks_in_a_fixed_number_of_statements():
    def first_timers(n, offset):
        for i in range(n):
            start([wait_step()], {"ticket": offset + i}, name=f"F{offset + i}")
        dispatch.process_batch(dispatch.claim(1000))  # parks; the first timers are due
        waits = list(RunWait.objects.filter(status="waiting"))
        with CaptureQueriesContext(connection) as ctx:
            assert matching.early_events(waits) == {}
        RunWait.objects.filter(status="waiting").update(status="cancelled")
        return len(ctx.captured_queries)

    assert first_timers(2, 0) == first_timers(8, 100) == 2  # the carriers, the events


def test_wait__a_full_batch_window_lets_each_wait_look_from_its_own_start(monkeypatch):
    first = start([wait_step()], {"ticket": 1}, name="A")
    second = start([wait_step()], {"ticket": 2}, name="B")
    dispatch.process_batch(dispatch.claim())  # both park
    a, b = RunWait.objects.get(run=first), RunWait.objects.get(run=second)
    RunWait.objects.filter(pk=a.pk).update(created_at=b.created_at - timedelta(seconds=2))
    a.refresh_from_db()
    emit({"ticket": {"id": 9}}, created_at=b.created_at - timedelta(seconds=1))  # fills it
    mine = emit({"ticket": {"id": 2}})
    monkeypatch.setattr(matching, "CATCH_UP_LIMIT", 1)
    assert matching.early_events([a, b]) == {b.pk: mine}


# -- where the event came from: a webhook, the REST API or emit() -------------------------


def api_post(payload, connector="my_service", event_type="customer.replied"):
    from django.contrib.auth.models import User
    from django.test import Client

    if not User.objects.filter(username="root").exists():
        User.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.login(username="root", password="pw")
    body = {"connector": connector, "type": event_type, "payload": payload}
    response = client.post("/api/events/", body, content_type="application/json")
    assert response.status_code == 202, response.content
    return OutboxItem.objects.get(pk=response.json()["id"])


def test_wait__an_event_posted_to_the_api_resumes_the_run_as_a_webhook_does(drain):
    run = start([wait_step(connector="my_service"), action("Then")], {"ticket": 7})
    drain()
    posted = api_post({"ticket": {"id": 7}, "text": "via the API"})
    assert posted.connector_key == "api:my_service"  # its own source, same connection
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert RunWait.objects.get(run=run).resolved_by == posted
    assert run.step_runs.get(step__name="Reply").output["event"]["payload"]["text"] == (
        "via the API"
    )


def test_wait__an_api_event_that_came_while_the_run_parked_is_not_missed(drain):
    run = start([wait_step(connector="my_service"), action("Then")], {"ticket": 3})
    dispatch.process_batch(dispatch.claim())  # parks; its first timer is due, not yet run
    posted = api_post({"ticket": {"id": 3}, "text": "early"})
    OutboxItem.objects.filter(pk=posted.pk).update(status="done")  # processed elsewhere
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert RunWait.objects.get(run=run).event["payload"]["text"] == "early"


def test_wait__an_emitted_event_resumes_the_run(drain):
    from automate import emit as app_emit

    run = start([wait_step(connector="app"), action("Then")], {"ticket": 5})
    drain()
    emitted = app_emit("customer.replied", {"ticket": {"id": 5}})
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert RunWait.objects.get(run=run).resolved_by == emitted


def test_wait__a_wait_on_one_connection_is_not_resumed_by_another_source(drain):
    """Waits are per connection (``connector``): an event of the same type and payload
    from another connection, posted to the API or emitted, leaves it waiting."""
    from automate import emit as app_emit

    run = start([wait_step(connector="shop"), action("Then")], {"ticket": 9})
    drain()
    api_post({"ticket": {"id": 9}}, connector="my_service")
    app_emit("customer.replied", {"ticket": {"id": 9}}, source="app")
    emit({"ticket": {"id": 9}}, connector="api_shop")  # a connection named like it
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.WAITING
    app_emit("customer.replied", {"ticket": {"id": 9}}, source="shop")
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED


def test_wait__a_wait_on_an_api_source_is_refused_at_create():
    """``api:<connection>`` is where API events are stored, not a connection: a wait on it
    would never be resumed (an API event resumes the waits on its connection)."""
    with pytest.raises(AutomateError) as exc:
        WorkflowService().create_workflow(name="X", steps=[wait_step(connector="api:shop")])
    assert exc.value.details["field"] == "steps[0].config.connector"


def test_wait__the_waits_index_leads_with_the_match_key():
    """An event batch's ``match_key IN (...)`` is a probe per key: the partial index of
    waiting event waits leads with the key (which hashes the connection and the type), so
    no plan can read every wait of a connection and type and filter them by key."""
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, RunWait._meta.db_table)
    assert found["automate_wait_match"]["columns"] == ["match_key"]
    assert found["automate_wait_match"]["index"]

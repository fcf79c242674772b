"""Crash tests for control flow: ``kill -9`` the worker during a loop, during delays and
while runs wait for events.

After the last worker finishes, every run has ended exactly once, a non-idempotent step
(counted at its HTTP target) never ran twice, no timer resumed a run twice and no parked
run was lost. The embedded ``automate_worker`` is crashed in each scenario; a real
``celery worker`` fed by ``automate_worker --dispatch-only`` in the loop-and-delay one.
"""

from __future__ import annotations

import json
import signal
from collections import Counter

import pytest

from automate.flow.models import RunWait
from automate.models import ConnectionProfile, RunStatus, StepRun, WorkflowRun
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.automate.test_webhook_view import post, sign
from tests.engine_support import (
    CountingServer,
    crash_celery_repeatedly,
    crash_repeatedly,
    start_embedded_worker,
    stop,
    wait_for,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

KILLS = 8


def record(name, key):
    """A non-idempotent step that POSTs ``key`` to the counting server."""
    return {
        "name": name,
        "type": "connector_action",
        "config": {"profile": "counter", "action": "record", "input": {"event": key}},
    }


def send(csrf_client, event_id, event_type="start", **payload):
    body = json.dumps({"id": event_id, "type": event_type, **payload}).encode()
    assert post(csrf_client, body, signature=sign(body)).status_code == 202


def crash_until(start_worker, finished, progress, what: str, **more) -> str:
    """Start a worker, SIGKILL it mid-work KILLS times, then let a last one finish."""
    return crash_repeatedly(
        start_worker,
        kills=KILLS,
        progress=progress,
        finished=finished,
        what=what,
        within=180,
        state=state,
        **more,
    )


def state() -> str:
    """What is left unfinished, for the message of a test that timed out."""
    runs = list(WorkflowRun.objects.values_list("status", flat=True))
    items = list(OutboxItem.objects.values_list("connector_key", "event_type", "status"))
    waits = list(RunWait.objects.values_list("kind", "status"))
    errors = Counter(
        str(e)[:300]
        for e in WorkflowRun.objects.filter(status="dead").values_list("error", flat=True)
    )
    dead = list(OutboxItem.objects.filter(status="dead").values_list("last_error", flat=True)[:3])
    return (
        f"runs {Counter(runs)}, items {Counter(items)}, waits {Counter(waits)}, "
        f"run errors {errors}, dead items {dead}"
    )


def all_settled() -> bool:
    return not OutboxItem.objects.exclude(status__in=["done", "dead"]).exists() and not (
        WorkflowRun.objects.exclude(status__in=["completed", "dead", "filtered"]).exists()
    )


def check_runs(target: CountingServer, keys_of_run, errors: str) -> None:
    runs = list(WorkflowRun.objects.order_by("id"))
    statuses = {run.status for run in runs}
    interrupted = StepRun.objects.filter(status="interrupted").count()
    dead = sum(run.status == RunStatus.DEAD for run in runs)
    print(f"flow crash test: {len(runs) - dead} completed, {dead} dead, {interrupted} interrupted")
    assert statuses <= {RunStatus.COMPLETED, RunStatus.DEAD}, errors[-2000:]
    assert max(target.counts.values()) == 1, "a non-idempotent step ran twice"
    for run in runs:
        # Dead only of a kill during a non-idempotent call (never repeated blindly).
        if run.status == RunStatus.DEAD:
            assert "interrupted mid-call" in run.error["message"], state()
    for run in runs:
        keys = keys_of_run(run)
        counts = [target.counts.get(key, 0) for key in keys]
        if run.status == RunStatus.COMPLETED:
            assert counts == [1] * len(keys), (run.pk, keys, counts)
    # No timer resumed a run twice: each wait was resolved by one item, and each
    # waiting record was finished once.
    for wait in RunWait.objects.all():
        assert wait.status != "waiting", f"wait {wait.pk} of run {wait.run_id} was lost"
        assert WorkflowRun.objects.filter(resume_item=wait.resolved_by).count() <= 1
    assert not StepRun.objects.filter(status="waiting").exists()


@pytest.fixture
def target():
    with CountingServer(delay=0.02) as server:
        ConnectionProfile.objects.create(
            key="counter", connector_key="recorder", config={"url": server.url}
        )
        yield server


def loop_and_delay_workflow():
    WorkflowService().create_workflow(
        name="Lines",
        trigger={"connector": "my_service", "events": ["start"]},
        steps=[
            {
                "name": "Each",
                "type": "for_each",
                "config": {
                    "items": [0, 1, 2, 3, 4],
                    "steps": [record("Reserve", "{{ event.id }}-{{ item }}")],
                },
            },
            {"name": "Pause", "type": "delay", "config": {"seconds": 1}},
            record("After", "{{ event.id }}-after"),
        ],
    )


def loop_and_delay_keys(run):
    event_id = run.event["id"]
    return [f"{event_id}-{i}" for i in range(5)] + [f"{event_id}-after"]


def test_flow_crash__embedded_worker_killed_during_loops_and_delays(postgres, csrf_client, target):
    loop_and_delay_workflow()
    for n in range(40):
        send(csrf_client, f"evt_{n}")
    errors = crash_until(
        start_embedded_worker,
        all_settled,
        StepRun.objects.count,
        "runs to end",
        # A fast worker may end the last run before the last kill: the kills stop there.
        out_of_work=all_settled,
    )
    check_runs(target, loop_and_delay_keys, errors)
    assert WorkflowRun.objects.count() == 40
    assert RunWait.objects.filter(status="due").count() >= 1


def test_flow_crash__celery_worker_killed_during_loops_and_delays(
    postgres, redis_url, csrf_client, target
):
    loop_and_delay_workflow()
    for n in range(30):
        send(csrf_client, f"evt_{n}")
    errors = crash_celery_repeatedly(
        redis_url,
        "flow-crash",
        kills=KILLS,
        progress=StepRun.objects.count,
        finished=all_settled,
        what="runs to end",
        within=180,
        state=state,
        out_of_work=all_settled,
    )
    check_runs(target, loop_and_delay_keys, errors)
    assert WorkflowRun.objects.count() == 30


def test_flow_crash__embedded_worker_killed_while_runs_wait_for_events(
    postgres, csrf_client, target
):
    WorkflowService().create_workflow(
        name="Ask",
        trigger={"connector": "my_service", "events": ["start"]},
        steps=[
            record("Ask", "{{ event.id }}-ask"),
            {
                "name": "Reply",
                "type": "wait_for_event",
                "config": {
                    "connector": "my_service",
                    "event": "reply",
                    "match": {"ticket": "{{ event.id }}"},
                    "timeout_seconds": 600,
                },
            },
            record("Thank", "{{ event.id }}-thanks-{{ steps.Reply.output.event.payload.n }}"),
        ],
    )
    runs = 30
    for n in range(runs):
        send(csrf_client, f"ticket_{n}")
    worker = start_embedded_worker()
    try:
        wait_for(
            lambda: RunWait.objects.filter(status="waiting").count() == runs,
            120,
            "every run to park",
        )
    finally:
        stop(worker, signal.SIGKILL)
    unsent = list(range(runs))

    def reply(count: int) -> None:
        for n in unsent[:count]:
            send(csrf_client, f"reply_{n}_a", "reply", ticket=f"ticket_{n}", n=1)
            send(csrf_client, f"reply_{n}_b", "reply", ticket=f"ticket_{n}", n=2)
        del unsent[:count]

    def progress() -> int:
        # Each kill cycle first sends a few replies, then waits for the worker to move.
        reply(4)
        return StepRun.objects.count()

    def finished() -> bool:
        reply(len(unsent))  # the ones the kill loop did not send
        return all_settled()

    errors = crash_until(
        start_embedded_worker,
        finished,
        progress,
        "runs to end",
        # Every reply sent and handled before the last kill: nothing left to interrupt.
        out_of_work=lambda: not unsent and all_settled(),
    )
    check_runs(target, lambda run: [f"{run.event['id']}-ask"], errors)
    # Every run was resumed by a reply.
    assert StepRun.objects.filter(step__name="Reply", status="succeeded").count() == runs
    completed = WorkflowRun.objects.filter(status="completed")
    assert completed.exists(), state()
    for run in completed:
        # One reply won the wait (two workers may see the pair in either order); the
        # other resumed nothing.
        won = run.step_runs.get(step__name="Reply").output["event"]["payload"]["n"]
        assert target.counts[f"{run.event['id']}-thanks-{won}"] == 1
        assert f"{run.event['id']}-thanks-{3 - won}" not in target.counts

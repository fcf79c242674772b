"""automate.retention.prune and manage.py automate_prune: only settled rows go.

Rows are written directly with the timestamps each rule reads, so every rule is tested
at its edge: one row just past the cutoff goes, its twin that something still needs stays.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automate import retention
from automate.checks import check_retention
from automate.flow.models import RunWait, WaitKind, WaitStatus
from automate.models import (
    FINISHED_RUN_STATUSES,
    RunStatus,
    Schedule,
    ScheduleTick,
    StepRun,
    WebhookReceipt,
    WebhookRefusalMinute,
    WorkerHeartbeat,
    WorkflowRun,
)
from automate.outgoing.api import OUTGOING_KEY
from automate.outgoing.models import DeliveryAttempt, OutgoingMessage, WebhookEndpoint
from automate.schedules.fire import fire_due
from automate.services import WorkflowService
from automate_core.outbox.models import OutboxItem, OutboxStatus
from tests.flow.helpers import action

NOW = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)  # past every default retention
RECENT = NOW - timedelta(hours=1)

pytestmark = pytest.mark.django_db


def item(status: str = OutboxStatus.DONE, at: datetime = OLD, **fields) -> OutboxItem:
    return OutboxItem.objects.create(
        connector_key=fields.pop("connector_key", "stripe"),
        status=status,
        completed_at=fields.pop("completed_at", at if status == OutboxStatus.DONE else None),
        available_at=at,
        created_at=at,
        trace_id="t",
        **fields,
    )


@pytest.fixture
def workflow():
    return WorkflowService().create_workflow(name="W", steps=[action("A")])


def run(workflow, status: str = RunStatus.COMPLETED, at: datetime | None = OLD, **fields):
    finished = at if status in FINISHED_RUN_STATUSES else None
    return WorkflowRun.objects.create(
        workflow=workflow, workflow_version=1, status=status, finished_at=finished, **fields
    )


def step_run(of: WorkflowRun) -> StepRun:
    attempt = StepRun.objects.filter(run=of).count() + 1
    step = of.workflow.steps.first()
    return StepRun.objects.create(run=of, step=step, attempt=attempt, status="succeeded")


def wait(of: WorkflowRun, status: str = WaitStatus.WAITING, **fields) -> RunWait:
    return RunWait.objects.create(
        run=of, step_run=step_run(of), kind=WaitKind.DELAY, status=status, created_at=OLD, **fields
    )


def prune(**kwargs) -> dict[str, int]:
    return retention.prune(now=NOW, **kwargs)


def exists(row) -> bool:
    return type(row).objects.filter(pk=row.pk).exists()


# -- Settings ---------------------------------------------------------------------------------


def test_retention__defaults_merged_with_the_setting(settings):
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "RETENTION": {"DONE": 3600, "DEAD": "30d", "RUNS": None},
    }
    ages = retention.retention()
    assert ages["DONE"] == timedelta(hours=1)
    assert ages["DEAD"] == timedelta(days=30)
    assert ages["RUNS"] is None
    assert ages["OUTGOING"] == retention.DEFAULT_RETENTION["OUTGOING"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"DONEE": 1}, "no key 'DONEE'"),
        ({"DONE": "soon"}, "not an age"),
        ({"DONE": -1}, "negative"),
    ],
)
def test_check_retention__bad_key_or_value_is_e130(settings, value, message):
    settings.AUTOMATE = {**settings.AUTOMATE, "RETENTION": value}
    (error,) = check_retention()
    assert error.id == "automate.E130" and message in error.msg
    with pytest.raises(CommandError, match=message):
        call_command("automate_prune", stdout=io.StringIO())


def test_check_retention__settled_items_kept_less_than_3_days_is_w130(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "RETENTION": {"DONE": timedelta(days=1)}}
    (warning,) = check_retention()
    assert warning.id == "automate.W130" and "DONE" in warning.msg
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "RETENTION": {"DONE": timedelta(days=3), "DEAD": None},
    }
    assert check_retention() == []
    settings.AUTOMATE = {**settings.AUTOMATE, "RETENTION": {}}
    assert check_retention() == []  # the defaults pass


def test_parse_age__units():
    assert retention.parse_age("90") == timedelta(seconds=90)
    assert retention.parse_age("30m") == timedelta(minutes=30)
    assert retention.parse_age("12h") == timedelta(hours=12)
    assert retention.parse_age("2w") == timedelta(days=14)
    assert retention.parse_age(None) is None


# -- Outbox items -----------------------------------------------------------------------------


def test_prune__only_done_items_past_the_cutoff(settings):
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "RETENTION": {"DONE": timedelta(days=7), "DEAD": timedelta(days=30)},
    }
    old_done = item()
    young_done = item(at=NOW - timedelta(days=6))
    unsettled = [item(status=s) for s in ("pending", "leased", "failed")]
    old_dead, young_dead = item(status="dead"), item(status="dead", at=NOW - timedelta(days=29))
    counts = prune()
    assert (counts["done"], counts["dead"]) == (1, 1)
    assert not exists(old_done) and not exists(old_dead)
    assert exists(young_done) and exists(young_dead)
    assert all(exists(row) for row in unsettled)


def test_prune__dead_items_aged_by_their_time_of_death(settings):
    """A dead letter is as old as its death (``completed_at``), not its last attempt's due
    time; one that died before deaths were recorded is aged by that due time."""
    settings.AUTOMATE = {**settings.AUTOMATE, "RETENTION": {"DEAD": timedelta(days=30)}}
    died_long_ago = item(status="dead", completed_at=NOW - timedelta(days=31))
    due_long_ago_died_lately = item(status="dead", completed_at=NOW - timedelta(days=29))
    died_before_it_was_recorded = item(status="dead")  # no completed_at, available_at OLD
    recorded_nothing_due_lately = item(status="dead", at=NOW - timedelta(days=29))
    assert prune()["dead"] == 2
    assert not exists(died_long_ago) and not exists(died_before_it_was_recorded)
    assert exists(due_long_ago_died_lately) and exists(recorded_nothing_due_lately)


def test_prune__dead_items_kept_by_default():
    dead = item(status="dead")
    assert prune()["dead"] == 0
    assert exists(dead)


def test_prune__items_an_unfinished_run_needs_stay(workflow):
    kept = []
    for status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RETRYING, RunStatus.WAITING):
        started, resumed = item(), item()
        kept += [started, resumed]
        waiting = run(workflow, status, outbox_item=started, resume_item=resumed)
        timer, resolver = item(), item()
        kept += [timer, resolver]
        wait(waiting, WaitStatus.DUE, timer=timer, resolved_by=resolver)
    assert prune(only=["done"])["done"] == 0
    assert all(exists(row) for row in kept)


def test_prune__items_of_finished_runs_go_and_the_links_are_cleared(workflow):
    started, resumed, timer = item(), item(), item()
    finished = run(
        workflow, RunStatus.COMPLETED, at=RECENT, outbox_item=started, resume_item=resumed
    )
    finished_wait = wait(finished, WaitStatus.DUE, timer=timer, resolved_by=resumed)
    assert prune(only=["done"])["done"] == 3
    finished.refresh_from_db()
    finished_wait.refresh_from_db()
    assert (finished.outbox_item_id, finished.resume_item_id) == (None, None)
    assert (finished_wait.timer_id, finished_wait.resolved_by_id) == (None, None)


def test_prune__dry_run_counts_and_deletes_nothing(workflow):
    done = item()
    finished = run(workflow)
    counts = prune(dry_run=True)
    assert (counts["done"], counts["runs"]) == (1, 1)
    assert exists(done) and exists(finished)


# -- Runs -------------------------------------------------------------------------------------


def test_prune__finished_runs_with_their_steps_and_waits(workflow):
    gone = [
        run(workflow, status)
        for status in (RunStatus.COMPLETED, RunStatus.FILTERED, RunStatus.CANCELLED)
    ]
    steps = [step_run(r) for r in gone]
    waits = [wait(gone[0], WaitStatus.DUE)]
    young = run(workflow, at=RECENT)
    unfinished = [
        run(workflow, s, at=None) for s in (RunStatus.RUNNING, RunStatus.WAITING, RunStatus.PENDING)
    ]
    dead = run(workflow, RunStatus.DEAD)
    assert prune(only=["runs"]) == {"runs": 3}
    assert not any(exists(row) for row in [*gone, *steps, *waits])
    assert all(exists(row) for row in [young, *unfinished, dead])


def test_prune__dead_runs_follow_dead_too(settings, workflow):
    settings.AUTOMATE = {**settings.AUTOMATE, "RETENTION": {"DEAD": timedelta(days=60)}}
    dead = run(workflow, RunStatus.DEAD)
    assert prune(only=["runs"]) == {"runs": 0}
    settings.AUTOMATE = {**settings.AUTOMATE, "RETENTION": {"DEAD": timedelta(days=10)}}
    assert prune(only=["runs"]) == {"runs": 1}
    assert not exists(dead)


def test_prune__parent_with_an_unfinished_child_stays(workflow):
    parent = run(workflow)
    child = run(workflow, RunStatus.RUNNING, at=None, parent_run=parent)
    assert prune(only=["runs"]) == {"runs": 0}
    assert exists(parent) and exists(child)


def test_prune__child_of_an_unfinished_parent_or_awaited_stays(workflow):
    waiting_parent = run(workflow, RunStatus.WAITING, at=None)
    child = run(workflow, parent_run=waiting_parent)
    wait(waiting_parent, child_run=child)
    finished_parent = run(workflow, at=RECENT)
    awaited = run(workflow, parent_run=finished_parent)
    wait(finished_parent, WaitStatus.WAITING, child_run=awaited)  # its wake is still due
    assert prune(only=["runs"]) == {"runs": 0}
    assert exists(child) and exists(awaited)


def test_prune__finished_family_goes_and_links_are_cleared(workflow):
    parent = run(workflow)
    child = run(workflow, parent_run=parent)
    parent_wait = wait(parent, WaitStatus.CHILD_ENDED, child_run=child)
    young_child = run(workflow, at=RECENT, parent_run=parent)
    young_parent = run(workflow, at=RECENT)
    young_wait = wait(young_parent, WaitStatus.CHILD_ENDED, child_run=run(workflow))
    assert prune(only=["runs"]) == {"runs": 3}
    assert not exists(parent) and not exists(child) and not exists(parent_wait)
    young_child.refresh_from_db()
    young_wait.refresh_from_db()
    assert young_child.parent_run_id is None and young_wait.child_run_id is None


# -- Receipts, schedule ticks, outgoing, the rest ------------------------------------------------


def test_prune__receipts_past_the_replay_window(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "WEBHOOK_REPLAY_WINDOW_SECONDS": 3600}
    WebhookReceipt.objects.create(
        connection="gh", digest="a" * 64, seen_at=NOW - timedelta(hours=2)
    )
    kept = WebhookReceipt.objects.create(
        connection="gh", digest="b" * 64, seen_at=RECENT + timedelta(minutes=30)
    )
    assert prune(only=["receipts"], older_than=timedelta(0)) == {"receipts": 1}
    assert list(WebhookReceipt.objects.values_list("digest", flat=True)) == [kept.digest]


def test_prune__receipts_in_chunks_by_their_composite_key(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "WEBHOOK_REPLAY_WINDOW_SECONDS": 60}
    for n in range(7):
        WebhookReceipt.objects.create(connection=f"c{n % 2}", digest=f"{n:064d}", seen_at=OLD)
    assert prune(only=["receipts"], batch_size=3) == {"receipts": 7}
    assert not WebhookReceipt.objects.exists()


def test_prune__schedule_ticks_keep_the_latest_and_never_fire_again(settings):
    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "RETENTION": {"TICKS": timedelta(0), "DONE": timedelta(0)},
    }
    t0 = datetime(2027, 5, 3, 9, 0, tzinfo=UTC)
    wf = WorkflowService().create_workflow(name="S", trigger={"every": 60}, steps=[action("A")])
    Schedule.objects.filter(workflow=wf).update(next_tick_at=t0)
    assert fire_due(now=t0 + timedelta(seconds=1)) == 1
    assert fire_due(now=t0 + timedelta(seconds=61)) == 1
    WorkflowRun.objects.update(status=RunStatus.COMPLETED, finished_at=t0)
    OutboxItem.objects.update(status="done", completed_at=t0)
    ScheduleTick.objects.update(created_at=t0)
    counts = retention.prune(now=t0 + timedelta(days=1), only=["ticks", "done"])
    assert counts == {"done": 2, "ticks": 1}
    assert list(ScheduleTick.objects.values_list("scheduled_for", flat=True)) == [
        t0 + timedelta(minutes=1)
    ]
    # The poll at the same moment again, and the next one: the fired ticks stay fired.
    Schedule.objects.filter(workflow=wf).update(next_tick_at=t0 + timedelta(minutes=1))
    assert fire_due(now=t0 + timedelta(seconds=61)) == 0
    assert WorkflowRun.objects.count() == 2


def test_prune__outgoing_messages_delivered_or_dead_not_due(workflow):
    endpoint = WebhookEndpoint.objects.create(url="https://example.com/hook")

    def message(outbox_status: str, attempt_at: datetime = OLD) -> OutgoingMessage:
        sent = OutgoingMessage.objects.create(event_type="e", payload={}, created_at=OLD)
        DeliveryAttempt.objects.create(
            endpoint=endpoint, message=sent, attempt=1, created_at=attempt_at
        )
        item(
            outbox_status,
            connector_key=OUTGOING_KEY,
            payload={"message": sent.pk, "endpoint": endpoint.pk},
        )
        return sent

    delivered, dead = message("done"), message("dead")
    retrying, leased = message("failed"), message("leased")
    retried_lately = message("done", attempt_at=RECENT)
    assert prune(only=["outgoing"], dry_run=True) == {"outgoing": 2}
    assert prune(only=["outgoing"]) == {"outgoing": 2}
    assert not exists(delivered) and not exists(dead)
    assert not DeliveryAttempt.objects.filter(message__in=[delivered.pk, dead.pk]).exists()
    assert all(exists(m) for m in (retrying, leased, retried_lately))
    assert DeliveryAttempt.objects.count() == 3


def test_prune__heartbeats_and_refusals():
    WorkerHeartbeat.objects.create(worker="gone", seen_at=OLD)
    alive = WorkerHeartbeat.objects.create(worker="alive", seen_at=RECENT)
    WebhookRefusalMinute.objects.create(minute=OLD, connector_key="x", status=401, count=3)
    assert prune(only=["heartbeats", "refusals"]) == {"heartbeats": 1, "refusals": 1}
    assert list(WorkerHeartbeat.objects.all()) == [alive]
    assert not WebhookRefusalMinute.objects.exists()


# -- Chunks -----------------------------------------------------------------------------------


def statements(ctx: CaptureQueriesContext) -> dict[str, int]:
    verbs = [q["sql"].split()[0] for q in ctx.captured_queries]
    return {verb: verbs.count(verb) for verb in ("SELECT", "UPDATE", "DELETE")}


def test_prune__statements_grow_with_chunks_not_rows():
    OutboxItem.objects.bulk_create(
        OutboxItem(connector_key="s", status="done", completed_at=OLD, trace_id="t")
        for _ in range(10_000)
    )
    with CaptureQueriesContext(connection) as ctx:
        assert prune(only=["done"], batch_size=2500) == {"done": 10_000}
    # Per chunk: its page, then in its transaction the rows that may go, the five links
    # cleared and the DELETE; and a last page that finds none left.
    assert statements(ctx) == {"SELECT": 4 * 2 + 1, "UPDATE": 4 * 5, "DELETE": 4}
    assert not OutboxItem.objects.exists()


def test_prune__runs_statements_grow_with_chunks_not_rows(workflow):
    step = workflow.steps.first()
    runs = WorkflowRun.objects.bulk_create(
        WorkflowRun(workflow=workflow, workflow_version=1, status="completed", finished_at=OLD)
        for _ in range(2_000)
    )
    StepRun.objects.bulk_create(StepRun(run=r, step=step, status="succeeded") for r in runs)
    with CaptureQueriesContext(connection) as ctx:
        assert prune(only=["runs"], batch_size=500) == {"runs": 2_000}
    assert statements(ctx) == {"SELECT": 4 * 2 + 1, "UPDATE": 4 * 2, "DELETE": 4 * 3}
    assert not StepRun.objects.exists()


def test_prune__a_kept_row_is_read_once_not_per_chunk(workflow):
    needed = item()
    run(workflow, RunStatus.RUNNING, at=None, outbox_item=needed)
    for _ in range(5):
        item()
    assert prune(only=["done"], batch_size=2) == {"done": 5}
    assert exists(needed)


def test_prune__rejects_unknown_kind_and_bad_batch():
    with pytest.raises(ValueError, match="unknown kind"):
        prune(only=["sessions"])
    with pytest.raises(ValueError, match="batch_size"):
        prune(batch_size=0)


# -- The command ------------------------------------------------------------------------------


def test_command__quiet_by_default_counts_at_verbosity_2():
    item(at=timezone_now() - timedelta(days=8))
    out = io.StringIO()
    call_command("automate_prune", stdout=out)
    assert out.getvalue() == "" and not OutboxItem.objects.exists()
    item(at=timezone_now() - timedelta(days=8))
    call_command("automate_prune", "--only", "done", "-v", "2", stdout=out)
    assert out.getvalue() == "done: deleted 1\n"


def test_command__dry_run_older_than_only_batch_size():
    young = item(at=timezone_now() - timedelta(hours=2))
    out = io.StringIO()
    call_command(
        "automate_prune",
        "--dry-run",
        "--older-than",
        "1h",
        "--only",
        "done",
        "--only",
        "runs",
        "--batch-size",
        "10",
        stdout=out,
    )
    assert out.getvalue() == "runs: would delete 0\ndone: would delete 1\n"
    assert exists(young)
    call_command("automate_prune", "--older-than", "1h", "--only", "done", stdout=out)
    assert not exists(young)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--older-than", "soon"], "--older-than"), (["--batch-size", "0"], "--batch-size")],
)
def test_command__bad_options(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("automate_prune", *args, stdout=io.StringIO())


def timezone_now() -> datetime:
    from django.utils import timezone

    return timezone.now()


# -- Celery beat and the docs ----------------------------------------------------------------


def test_task__prune_runs_by_its_name():
    from automate.tasks import PRUNE_TASK
    from automate.tasks import prune as prune_task

    item(at=timezone_now() - timedelta(days=8))
    assert prune_task.name == PRUNE_TASK == "automate.prune"
    result = prune_task.apply(kwargs={"only": ["done"]})
    assert result.get() == {"done": 1}
    assert not OutboxItem.objects.exists()


DOC = Path(__file__).resolve().parents[2] / "docs" / "workers.md"


def doc_block(marker: str) -> dict:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [block] = [b for b in blocks if marker in b]
    namespace: dict = {}
    exec(block, namespace)  # the page's code, as written
    return namespace


def test_docs__the_retention_example_is_valid_and_names_every_key(settings):
    documented = doc_block('"RETENTION"')["AUTOMATE"]["RETENTION"]
    assert set(documented) == set(retention.DEFAULT_RETENTION)
    settings.AUTOMATE = {**settings.AUTOMATE, "RETENTION": documented}
    assert check_retention() == []
    assert retention.retention()["DEAD"] == timedelta(days=90)


def test_docs__the_beat_example_names_the_task_and_every_kind_is_listed():
    from automate.tasks import PRUNE_TASK

    [entry] = doc_block("CELERY_BEAT_SCHEDULE")["CELERY_BEAT_SCHEDULE"].values()
    assert entry["task"] == PRUNE_TASK
    page = DOC.read_text()
    assert all(f"`{kind}`" in page for kind in retention.KINDS)


# -- What changed between a chunk's SELECT and its DELETE stays --------------------------------


def chunk(kind: str, ids: list) -> int:
    """One chunk's transaction, for ids its SELECT found (before the change)."""
    return retention._delete_chunk(retention._SPECS[kind], ids, retention._cutoffs(NOW, None))


def test_chunk__an_item_a_run_took_up_since_the_select_stays(workflow):
    taken = item()
    run(workflow, RunStatus.RUNNING, at=None, resume_item=taken)
    assert chunk("done", [taken.pk]) == 0
    assert exists(taken) and WorkflowRun.objects.get().resume_item_id == taken.pk


def test_chunk__a_message_replayed_since_the_select_stays():
    sent = OutgoingMessage.objects.create(event_type="e", payload={}, created_at=OLD)
    item("pending", connector_key=OUTGOING_KEY, payload={"message": sent.pk, "endpoint": 1})
    assert chunk("outgoing", [sent.pk]) == 0
    assert exists(sent)


def test_chunk__a_receipt_taken_over_since_the_select_stays(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "WEBHOOK_REPLAY_WINDOW_SECONDS": 60}
    fresh = WebhookReceipt.objects.create(connection="gh", digest="c" * 64, seen_at=NOW)
    assert chunk("receipts", [fresh.pk]) == 0
    assert WebhookReceipt.objects.exists()

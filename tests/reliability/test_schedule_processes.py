"""Schedules with real worker processes on PostgreSQL: each tick fires once.

* Two embedded workers (``automate_worker``), then two Celery-mode dispatchers
  (``automate_worker --dispatch-only``) feeding a real ``celery worker``, run an
  ``every: 1`` schedule for 10 s: 10 +/- 1 runs, never two for one tick, no tick skipped.
* A worker killed with ``kill -9`` in the middle of a tick (its tick row inserted, the
  transaction still open) leaves nothing behind; the next worker fires that tick once.

The non-idempotent ``record`` action counts each tick at a local HTTP server, so a tick
run twice would show there even if the database hid it.
"""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from automate.models import ConnectionProfile, RunStatus, ScheduleTick, WorkflowRun
from automate.schedules.fire import SCHEDULE_CONNECTOR_KEY
from automate.services import WorkflowService
from automate_core.models import OutboxItem
from tests.engine_support import (
    CountingServer,
    celery_worker_args,
    start,
    stop,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WINDOW = 10  # seconds the schedule runs


def every_second(target: CountingServer):
    ConnectionProfile.objects.create(
        key="counter", connector_key="recorder", config={"url": target.url}
    )
    return WorkflowService().create_workflow(
        name="Tick",
        trigger={"every": 1},
        steps=[
            {
                "name": "Record",
                "type": "connector_action",
                "config": {
                    "profile": "counter",
                    "action": "record",  # ActionSpec(idempotent=False)
                    "input": {"event": "{{ event.payload.scheduled_for }}"},
                },
            }
        ],
    )


def warm_up(processes) -> None:
    """Wait until the workers poll: an event no workflow wants gets processed."""
    from automate import emit

    item = emit("warm.up", {})
    try:
        wait_for(
            lambda: OutboxItem.objects.get(pk=item.pk).status == "done", 60, "a worker to start"
        )
    except AssertionError as exc:
        errors = "".join(stop(p)[-2000:] for p in processes)
        raise AssertionError(f"{exc}; stderr: {errors}") from None
    time.sleep(1)  # the other process too


def run_window(target: CountingServer) -> None:
    workflow = every_second(target)
    time.sleep(WINDOW)
    WorkflowService().disable(workflow)  # no tick after this; the rest finish
    wait_for(
        lambda: not WorkflowRun.objects.exclude(status=RunStatus.COMPLETED).exists(),
        60,
        "every run to complete",
    )


def check_ticks(target: CountingServer, *, expected: range | None = None) -> list[datetime]:
    runs = list(WorkflowRun.objects.order_by("id"))
    ticks = sorted(datetime.fromisoformat(r.event["payload"]["scheduled_for"]) for r in runs)
    print(f"schedule: {len(runs)} runs for ticks {ticks[0]} .. {ticks[-1]}")
    if expected is not None:
        assert len(runs) in expected, len(runs)
    assert len(set(ticks)) == len(ticks), "two runs for one tick"
    assert ScheduleTick.objects.count() == len(runs)
    assert OutboxItem.objects.filter(connector_key=SCHEDULE_CONNECTOR_KEY).count() == len(runs)
    # No tick skipped between the first and the last.
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    # Each tick's non-idempotent action ran exactly once.
    assert sorted(target.counts) == sorted(t.isoformat() for t in ticks)
    assert set(target.counts.values()) == {1}
    assert {r.status for r in runs} == {RunStatus.COMPLETED}
    return ticks


def leased_by_processes() -> Counter[str]:
    """How many tick items each worker process (host:pid) claimed. Which poller wins a
    tick is a race: both usually do, but the test does not depend on it."""
    names = OutboxItem.objects.filter(connector_key=SCHEDULE_CONNECTOR_KEY).values_list(
        "leased_by", flat=True
    )
    return Counter(":".join(name.split(":")[:2]) for name in names)


def test_schedule__two_embedded_workers_fire_each_tick_once(postgres):
    args = ["-m", "django", "automate_worker", "--threads", "2", "--poll", "0.1"]
    with CountingServer() as target:
        workers = [start(args, worker_env()) for _ in range(2)]
        try:
            warm_up(workers)
            run_window(target)
            alive = [w.poll() is None for w in workers]
        finally:
            errors = "".join(stop(w) for w in workers)
        assert alive == [True, True], errors[-3000:]  # both polled through the window
        check_ticks(target, expected=range(WINDOW - 1, WINDOW + 2))
    print(f"tick items claimed by: {leased_by_processes()}")


def test_schedule__two_dispatchers_and_a_celery_worker_fire_each_tick_once(postgres, redis_url):
    queue = f"automate-schedule-{uuid.uuid4().hex[:8]}"
    env = worker_env(AUTOMATE_WORKER_BROKER_URL=redis_url, AUTOMATE_WORKER_QUEUE=queue)
    celery = celery_worker_args(queue)
    dispatch = ["-m", "django", "automate_worker", "--dispatch-only", "--poll", "0.1"]
    with CountingServer() as target:
        processes = [start(celery, env), start(dispatch, env), start(dispatch, env)]
        try:
            warm_up(processes)
            run_window(target)
            alive = [p.poll() is None for p in processes]
        finally:
            errors = "".join(stop(p) for p in processes)
        assert alive == [True, True, True], errors[-3000:]
        check_ticks(target, expected=range(WINDOW - 1, WINDOW + 2))
    print(f"tick items claimed by: {leased_by_processes()}")


def test_schedule__kill_9_mid_tick_never_fires_it_twice(postgres, tmp_path: Path):
    marker = tmp_path / "paused"
    args = ["-m", "django", "automate_worker", "--threads", "1", "--poll", "0.1"]
    with CountingServer() as target:
        workflow = every_second(target)
        paused = start(args, worker_env(AUTOMATE_TEST_PAUSE_AFTER_TICK=str(marker)))
        try:
            wait_for(marker.exists, 60, "the worker to pause mid-tick")
            tick = datetime.fromisoformat(marker.read_text())
            # Its tick row, outbox item and run are not committed: nobody sees them.
            assert not ScheduleTick.objects.exists()
            assert not WorkflowRun.objects.exists()
        finally:
            stop(paused, signal.SIGKILL)
        worker = start(args, worker_env())
        try:
            wait_for(
                lambda: WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() >= 3,
                60,
                "the next worker to fire ticks",
            )
            WorkflowService().disable(workflow)
            wait_for(
                lambda: not WorkflowRun.objects.exclude(status=RunStatus.COMPLETED).exists(),
                60,
                "every run to complete",
            )
        finally:
            errors = stop(worker)
        ticks = check_ticks(target)
    # The killed worker's tick was fired once, by the next worker (still within the grace).
    assert tick in ticks, errors[-3000:]

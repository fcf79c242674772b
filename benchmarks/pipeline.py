"""Pipeline: events through outbox -> Celery on Redis -> a two-step workflow of no-ops.

    python -m benchmarks.pipeline [--events 10000] [--workers 1,2,4]

For each worker count, in the same run and on the same PostgreSQL and Redis:

* **ours**: ``--events`` events are enqueued (``queue.enqueue``, one INSERT each, as the
  webhook view does) while ``automate_worker --dispatch-only`` hands batches to a Celery
  worker with that many processes; each event runs a two-step workflow of no-op steps,
  declared idempotent, then again declared non-idempotent. Measured from the first
  insert to the last run completed.
* **procrastinate**: the same number of no-op jobs deferred one by one, run by that many
  ``procrastinate worker`` processes; first defer to last job succeeded.
* **bare Celery**: one task per event (``apply_async``, no outbox) that records it ran
  with one INSERT; first send to last row.

Every system's events come from ``--producers`` processes at once (2 by default), each
sending one event at a time, as concurrent webhook requests would. On a 2-CPU machine the
producers compete with the workers, so a second figure measures the pipeline alone: a
**backlog drain**, ours and procrastinate, where the events are all stored before the
workers start and one UPDATE makes them due (the clock starts there).

Goal: ours at 3x procrastinate or more, and 1,000 events/s or more.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks import common

DB = "automate_bench_pipeline"
# How often each cell asks whether everything is done: a count over the whole table, so
# the asking must not take a noticeable share of the CPUs the workers run on.
POLL = 0.1
LOGS = Path(os.environ.get("BENCH_LOG_DIR", "/tmp"))


def _enqueue(prefix: str, event_type: str, share: range) -> None:
    from django.db import connection

    from automate_core.outbox import queue

    for n in share:
        queue.enqueue(
            "github",
            event_type=event_type,
            payload={"action": "opened", "number": n},
            external_id=f"{prefix}-{n}",
            trace_id=uuid.uuid4().hex,
        )
    connection.close()


def ours(
    url: str,
    events: int,
    workers: int,
    args,
    *,
    event_type: str = "pull_request",
    backlog: bool = False,
) -> float:
    """Events/s from the first insert to the last run done; with ``backlog``, the events are
    all stored (not yet due) before the workers start, and the clock runs from the moment
    one UPDATE makes them due."""
    from datetime import timedelta

    from django.db import connection, connections
    from django.utils import timezone

    from automate.models import RunStatus, StepRun, WorkflowRun
    from automate_core.models import OutboxItem

    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    produce = functools.partial(_enqueue, queue_name, event_type)
    if backlog:
        connections.close_all()
        common.produce(produce, events, args.producers)
        OutboxItem.objects.update(available_at=timezone.now() + timedelta(hours=1))
    env = common.env_for(url, CELERY_BROKER_URL=common.REDIS_URL, BENCH_QUEUE=queue_name)
    celery = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker"]
    celery += ["--pool", "prefork", "--concurrency", str(workers), "--queues", queue_name]
    celery += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    celery += ["--prefetch-multiplier", "4"]
    dispatch = [sys.executable, "-m", "django", "automate_worker", "--dispatch-only"]
    dispatch += ["--batch", str(args.batch), "--poll", "0.05"]
    procs = [
        common.start(celery, env, LOGS / "bench-celery.log"),
        common.start(dispatch, env, LOGS / "bench-dispatch.log"),
    ]
    try:
        time.sleep(4)  # let the workers boot before the clock starts
        connections.close_all()
        started = time.perf_counter()
        if backlog:
            OutboxItem.objects.update(available_at=timezone.now())
        else:
            common.produce(produce, events, args.producers)
        inserted = time.perf_counter() - started
        common.wait_for(
            lambda: (
                WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() >= events
                and not OutboxItem.objects.exclude(status="done").exists()
            ),
            args.timeout,
            "every run to complete and every event to be settled",
            step=POLL,
        )
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            common.stop(proc)
    assert not OutboxItem.objects.exclude(status="done").exists()
    assert StepRun.objects.filter(status="succeeded").count() == 2 * events
    what = "backlog made due" if backlog else f"{event_type} inserts"
    print(f"ours x{workers}: {what} took {inserted:.1f} s, total {elapsed:.1f} s", flush=True)
    # A clean slate for the next cell.
    StepRun.objects.all().delete()
    WorkflowRun.objects.all().delete()
    OutboxItem.objects.all().delete()
    connection.close()
    return events / elapsed


def _send_bare(queue_name: str, share: range) -> None:
    from benchmarks.bench_app.tasks import bare
    from benchmarks.celery_app import app

    with app.connection_for_write() as conn, conn.Producer() as producer:
        for n in share:
            bare.apply_async(args=[n], queue=queue_name, producer=producer)


def _defer_noop(share: range, *, later: bool = False) -> None:
    from benchmarks.procrastinate_app import app, noop

    task = noop.configure(schedule_in={"hours": 1}) if later else noop
    with app.open():
        for n in share:
            task.defer(event=n)


def bare_celery(url: str, events: int, workers: int, args) -> float:
    from django.db import connection

    from benchmarks.bench_app.tasks import CREATE, TABLE
    from benchmarks.celery_app import app

    queue_name = f"bench-bare-{uuid.uuid4().hex[:8]}"
    app.conf.broker_url = common.REDIS_URL
    env = common.env_for(url, CELERY_BROKER_URL=common.REDIS_URL, BENCH_QUEUE=queue_name)
    celery = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker"]
    celery += ["--pool", "prefork", "--concurrency", str(workers), "--queues", queue_name]
    celery += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    celery += ["--prefetch-multiplier", "4"]
    with connection.cursor() as cursor:
        cursor.execute(CREATE)
        cursor.execute(f"TRUNCATE {TABLE}")
    proc = common.start(celery, env, LOGS / "bench-celery-bare.log")

    def done() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            return cursor.fetchone()[0] >= events

    try:
        time.sleep(4)
        connection.close()
        started = time.perf_counter()
        common.produce(functools.partial(_send_bare, queue_name), events, args.producers)
        common.wait_for(done, args.timeout, "every bare task to run", step=POLL)
        elapsed = time.perf_counter() - started
    finally:
        common.stop(proc)
    connection.close()
    return events / elapsed


def procrastinate_baseline(
    url: str, events: int, workers: int, args, *, backlog: bool = False
) -> float:
    """Jobs/s from the first defer to the last job succeeded; with ``backlog`` the jobs are
    deferred for later before the workers start and made due by one UPDATE."""
    import psycopg

    env = common.env_for(url, BENCH_PROCRASTINATE_DB=url)
    os.environ["BENCH_PROCRASTINATE_DB"] = url
    with psycopg.connect(url, autocommit=True) as conn:
        has_schema = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0]
        if has_schema:
            conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    if not has_schema:
        subprocess.run(
            [
                *[sys.executable, "-m", "procrastinate", "-a", "benchmarks.procrastinate_app.app"],
                *["schema", "--apply"],
            ],
            env=env,
            check=True,
            cwd=common.ROOT,
            stdout=subprocess.DEVNULL,
        )
    worker = [sys.executable, "-m", "procrastinate", "-a", "benchmarks.procrastinate_app.app"]
    worker += ["worker", "--concurrency", str(args.procrastinate_concurrency)]
    # Jobs made due by an UPDATE send no notification: poll often, as our dispatcher does.
    worker += ["--fetch-job-polling-interval", "0.05"]
    if backlog:
        common.produce(functools.partial(_defer_noop, later=True), events, args.producers)
    procs = [common.start(worker, env, LOGS / "bench-procrastinate.log") for _ in range(workers)]

    def done() -> bool:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
            ).fetchone()
        return row[0] >= events

    try:
        time.sleep(4)
        started = time.perf_counter()
        if backlog:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now()")
        else:
            common.produce(_defer_noop, events, args.producers)
        common.wait_for(done, args.timeout, "every procrastinate job to succeed", step=POLL)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            common.stop(proc)
    return events / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--batch", type=int, default=100, help="outbox claim batch")
    parser.add_argument("--procrastinate-concurrency", type=int, default=4)
    parser.add_argument(
        "--producers", type=int, default=2, help="processes inserting/deferring/sending at once"
    )
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()

    url = common.scratch_database(DB)
    common.migrate_and_setup(url, CELERY_BROKER_URL=common.REDIS_URL)
    from automate.services import WorkflowService

    for name, event_type, idempotent in [
        ("Bench no-ops", "pull_request", True),
        ("Bench non-idempotent no-ops", "push", False),
    ]:
        WorkflowService().create_workflow(
            name=name,
            trigger={"connector": "github", "events": [event_type]},
            steps=[
                {"name": "First", "type": "bench_noop", "config": {"idempotent": idempotent}},
                {"name": "Second", "type": "bench_noop", "config": {"idempotent": idempotent}},
            ],
        )
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        rate = ours(url, args.events, workers, args)
        strict = ours(url, args.events, workers, args, event_type="push")
        proc_rate = procrastinate_baseline(url, args.events, workers, args)
        bare_rate = bare_celery(url, args.events, workers, args)
        drain = ours(url, args.events, workers, args, backlog=True)
        proc_drain = procrastinate_baseline(url, args.events, workers, args, backlog=True)
        rows.append(
            [
                workers,
                f"{rate:,.0f}",
                f"{strict:,.0f}",
                f"{proc_rate:,.0f}",
                f"{bare_rate:,.0f}",
                f"{rate / proc_rate:.2f}x",
                "met" if rate >= 3 * proc_rate and rate >= 1000 else "missed",
                f"{drain:,.0f} / {proc_drain:,.0f} ({drain / proc_drain:.2f}x)",
            ]
        )
        print(rows[-1], flush=True)
    from django.db import connection

    connection.close()
    common.drop_database(DB)
    body = common.table(
        [
            "worker processes",
            "ours events/s",
            "ours, non-idempotent steps",
            "procrastinate jobs/s",
            "bare Celery tasks/s",
            "ours / procrastinate",
            "goal (>=3x, >=1,000/s)",
            "backlog drain: ours / procrastinate",
        ],
        rows,
    )
    notes = (
        f"{args.events} events per cell, each timed from the first insert to the last run "
        f"done. Ours: two no-op steps per event (a WorkflowRun and two StepRuns written), "
        f"idempotent, then (next column) declared non-idempotent, which commits each step's "
        f"`running` record before its call and its result after; outbox claim batch "
        f"{args.batch}, Celery prefork, one dispatcher process. procrastinate: "
        f"{args.procrastinate_concurrency} concurrent jobs per worker process. Bare Celery: "
        f"one task per event writing one row. Events are inserted/deferred/sent by "
        f"{args.producers} processes at once (each one at a time, a commit per event, as "
        "webhook requests would), while the workers run; all on the same 2 CPUs. Backlog "
        "drain: the same events stored before the workers start, timed from the one UPDATE "
        "that makes them all due to the last one done (idempotent no-ops; procrastinate "
        "jobs deferred for later, then made due)."
    )
    common.report("Pipeline: outbox -> Celery on Redis -> two-step workflow", body, notes)


if __name__ == "__main__":
    main()

"""Pipeline: events through outbox -> Celery on Redis -> a two-step workflow of no-ops,
against procrastinate, DBOS Transact and bare Celery, each at its best shape.

    python -m benchmarks.pipeline [--events 10000] [--no-write]

Every system runs on the same PostgreSQL server (and Redis, for Celery) in one run:

* **ours**: events enqueued (``queue.enqueue``, one INSERT each, as the webhook view
  does) while ``automate_worker --dispatch-only`` hands batches to a Celery worker with
  N prefork processes; each event runs a two-step workflow of no-op steps, declared
  idempotent (and, end to end in a shape selection of its own, non-idempotent). Traces
  and metrics off (``BENCH_OBSERVABILITY=off``), then on, in a table of their own.
* **procrastinate**: an async no-op job per event, run by P ``procrastinate worker``
  processes with ``--concurrency C`` each.
* **DBOS Transact**: a workflow of two no-op steps per event (DBOS records the workflow
  and each step's outcome), on a database of its own; enqueued on a DBOS queue
  (``DBOSClient.enqueue``) and run by P worker processes with ``worker_concurrency`` C,
  and started directly: each producer process launches DBOS and calls the workflow.
* **bare Celery**: one task per event (``apply_async``, no outbox) writing one row;
  Celery's default (acknowledged on receipt, prefetch multiplier 4) and the durable shape
  (``acks_late``, prefetch multiplier 1), with P prefork processes.

Two measures. **End to end**: ``--producers`` processes (2) send the events, one at a
time, as concurrent webhook requests would, while the workers run; timed from the first
send to the last event done. **Backlog drain**: the events are stored before the clock
starts and then made available at once (ours and procrastinate: one UPDATE makes them
due; DBOS: the queue's worker concurrency raised from 0; Celery: the worker starts
consuming the queue); timed from there to the last event done.

Each system's shapes are first measured with ``--shape-events`` events per cell; the
two best shapes for each measure are then measured again with ``--events``, and the better
one's figures (and ours / them) lead the report. ``--no-write`` (or ``BENCH_NO_WRITE=1``) prints the
report without appending it to docs/benchmarks.md; ``--database`` and
``--dbos-database`` name the scratch databases (trial runs use names of their own).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import common

DB = "automate_bench_pipeline"
DBOS_DB = "automate_bench_baselines_dbos"
DBOS_QUEUE = "bench"
# How often each cell asks whether everything is done: a count over the whole table, so
# the asking must not take a noticeable share of the CPUs the workers run on.
POLL = 0.1
# Workers boot before the clock starts.
BOOT = 4.0
LOGS = Path(os.environ.get("BENCH_LOG_DIR", "/tmp"))
_STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.0f} s] {message}", flush=True)


# --- ours ----------------------------------------------------------------------------


def _celery_worker(queue_name: str, processes: int, prefetch: int) -> list[str]:
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker"]
    command += ["--pool", "prefork", "--concurrency", str(processes), "--queues", queue_name]
    command += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    return [*command, "--prefetch-multiplier", str(prefetch)]


def ours(
    url: str,
    events: int,
    workers: int,
    args,
    *,
    event_type: str = "pull_request",
    backlog: bool = False,
    observability: str = "off",
    batches_per_process: int = 2,
) -> float:
    """Events/s from the first insert to the last run done; with ``backlog``, the events are
    all stored (not yet due) before the workers start, and the clock runs from the moment
    one UPDATE makes them due. ``observability`` is the workers' ``BENCH_OBSERVABILITY``;
    ``batches_per_process`` sets ``DISPATCH_MAX_BATCHES_IN_FLIGHT`` to that many per
    worker process."""
    from datetime import timedelta

    from django.db import connection, connections
    from django.utils import timezone

    from automate.models import RunStatus, StepRun, WorkflowRun
    from automate_core.models import OutboxItem

    queue_name = f"bench-{uuid.uuid4().hex[:8]}"
    produce = functools.partial(common.enqueue_noop_events, queue_name, event_type)
    if backlog:
        connections.close_all()
        common.produce(produce, events, args.producers)
        OutboxItem.objects.update(available_at=timezone.now() + timedelta(hours=1))
    metrics_dir = tempfile.mkdtemp(prefix="bench-metrics-") if observability == "on" else ""
    extra = {"PROMETHEUS_MULTIPROC_DIR": metrics_dir} if metrics_dir else {}
    env = common.env_for(
        url,
        CELERY_BROKER_URL=common.REDIS_URL,
        BENCH_QUEUE=queue_name,
        BENCH_OBSERVABILITY=observability,
        # 2: one batch running and one waiting per process (fed in a backlog); 1: while
        # the producers set the pace, events gather into fewer, larger batches.
        BENCH_MAX_BATCHES=os.environ.get("BENCH_MAX_BATCHES", str(batches_per_process * workers)),
        **extra,
    )
    if not metrics_dir:
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    celery = _celery_worker(queue_name, workers, 4)
    dispatch = [sys.executable, "-m", "django", "automate_worker", "--dispatch-only"]
    dispatch += ["--batch", str(args.batch), "--poll", "0.05"]
    procs = [
        common.start(celery, env, LOGS / "bench-celery.log"),
        common.start(dispatch, env, LOGS / "bench-dispatch.log"),
    ]
    cpu_before = common.children_cpu()
    producers_cpu = 0.0
    try:
        time.sleep(BOOT)
        connections.close_all()
        clocked = _clocked_cpu(procs) if args.systems else None
        started = time.perf_counter()
        if backlog:
            OutboxItem.objects.update(available_at=timezone.now())
        else:
            common.produce(produce, events, args.producers)
            producers_cpu = common.children_cpu() - cpu_before
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
        dispatcher_cpu = common.process_cpu(procs[1].pid)
        if clocked is not None:
            after = _clocked_cpu(procs)
            clocked = tuple(b - a for a, b in zip(clocked, after, strict=True))
        # Proof that metrics were on: the workers wrote their multiprocess files.
        assert not metrics_dir or any(Path(metrics_dir).glob("*.db")), "no metrics written"
    finally:
        for proc in procs:
            common.stop(proc)
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    assert not OutboxItem.objects.exclude(status="done").exists()
    assert StepRun.objects.filter(status="succeeded").count() == 2 * events
    if args.systems:
        workers_cpu = common.children_cpu() - cpu_before - producers_cpu
        _trial_stats(events, elapsed, producers_cpu, dispatcher_cpu, workers_cpu)
        if clocked is not None:
            names = ("Celery workers", "dispatcher", "their PostgreSQL backends")
            shown = ", ".join(
                f"{name} {1e3 * cpu / events:.3f} ms"
                for name, cpu in zip(names, clocked, strict=True)
            )
            progress(f"  CPU per event while the clock ran (no boot): {shown}")
    # A clean slate for the next cell, as procrastinate's and DBOS's cells get: TRUNCATE,
    # not DELETE, whose dead rows and index entries (several per event) the next
    # cell's claims and sweeps would wade through until autovacuum came by mid-cell.
    tables = ", ".join(model._meta.db_table for model in (StepRun, WorkflowRun, OutboxItem))
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} CASCADE")
    connection.close()
    return events / elapsed


def _clocked_cpu(procs: list[subprocess.Popen]) -> tuple[float, float, float]:
    """CPU seconds used so far by the Celery worker (its pool's processes included), the
    dispatcher, and the PostgreSQL backends of their connections to this database: read
    at the clock's start and end, so boots are left out."""
    from django.db import connection

    backends = common.database_backends()
    connection.close()
    return (
        sum(common.process_cpu(pid) for pid in common.process_tree(procs[0].pid)),
        common.process_cpu(procs[1].pid),
        sum(common.process_cpu(pid) for pid in backends),
    )


def _trial_stats(
    events: int, elapsed: float, producers: float, dispatcher: float, workers: float
) -> None:
    """Trials: CPU per event outside PostgreSQL, and the sizes of the claimed batches
    (a settled item keeps the lease token of its last claim)."""
    from django.db.models import Count

    from automate_core.models import OutboxItem

    sizes = sorted(
        OutboxItem.objects.values("lease_token").annotate(n=Count("id")).values_list("n", flat=True)
    )
    middle = sizes[len(sizes) // 2] if sizes else 0
    progress(
        f"  CPU per event: producers {1e3 * producers / events:.2f} ms, Celery workers "
        f"(boot included) {1e3 * (workers - dispatcher) / events:.2f} ms; dispatcher "
        f"{1e3 * dispatcher / elapsed:.0f} ms/s; {len(sizes)} batches, median "
        f"{middle}, mean {events / max(len(sizes), 1):.1f}, largest {max(sizes, default=0)}"
    )


# --- bare Celery ---------------------------------------------------------------------


def _send_bare(queue_name: str, durable: bool, share: range) -> None:
    from benchmarks.bench_app.tasks import bare, bare_durable
    from benchmarks.celery_app import app

    task = bare_durable if durable else bare
    with app.connection_for_write() as conn, conn.Producer() as producer:
        for n in share:
            task.apply_async(args=[n], queue=queue_name, producer=producer)


def bare_celery(
    url: str, events: int, processes: int, args, *, durable: bool, backlog: bool = False
) -> float:
    """Tasks/s from the first send to the last row; with ``backlog`` the tasks wait in
    Redis while the worker consumes another queue, and the clock starts when it is told
    to consume theirs (``add_consumer``)."""
    from django.db import connection

    from benchmarks.bench_app.tasks import CREATE, TABLE
    from benchmarks.celery_app import app

    token = uuid.uuid4().hex[:8]
    queue_name = f"bench-bare-{token}"
    node = f"bench-{token}@localhost"
    app.conf.broker_url = common.REDIS_URL
    env = common.env_for(url, CELERY_BROKER_URL=common.REDIS_URL, BENCH_QUEUE=queue_name)
    celery = _celery_worker(
        f"bench-idle-{token}" if backlog else queue_name, processes, 1 if durable else 4
    )
    celery += ["--hostname", node]
    with connection.cursor() as cursor:
        cursor.execute(CREATE)
        cursor.execute(f"TRUNCATE {TABLE}")
    connection.close()
    send = functools.partial(_send_bare, queue_name, durable)
    if backlog:
        common.produce(send, events, args.producers)
    proc = common.start(celery, env, LOGS / "bench-celery-bare.log")

    def done() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE}")
            return cursor.fetchone()[0] >= events

    try:
        time.sleep(BOOT)
        if backlog:
            # Remote control answers only once the worker is ready: wait for it.
            common.wait_for(
                lambda: bool(app.control.ping(destination=[node], timeout=1)),
                60,
                f"the Celery worker {node} to answer",
            )
        connection.close()
        started = time.perf_counter()
        if backlog:
            replies = app.control.add_consumer(
                queue_name, destination=[node], reply=True, timeout=10
            )
            if not replies:
                raise RuntimeError(f"the Celery worker {node} did not answer add_consumer")
        else:
            common.produce(send, events, args.producers)
        common.wait_for(done, args.timeout, "every bare task to run", step=POLL)
        elapsed = time.perf_counter() - started
    finally:
        common.stop(proc)
    connection.close()
    return events / elapsed


# --- procrastinate -------------------------------------------------------------------


def _defer_noop(share: range, *, later: bool = False) -> None:
    from benchmarks.procrastinate_app import app, noop

    task = noop.configure(schedule_in={"hours": 1}) if later else noop
    with app.open():
        for n in share:
            task.defer(event=n)


def procrastinate_schema(url: str) -> None:
    os.environ["BENCH_PROCRASTINATE_DB"] = url
    subprocess.run(
        [
            *[sys.executable, "-m", "procrastinate", "-a", "benchmarks.procrastinate_app.app"],
            *["schema", "--apply"],
        ],
        env=common.env_for(url, BENCH_PROCRASTINATE_DB=url),
        check=True,
        cwd=common.ROOT,
        stdout=subprocess.DEVNULL,
    )


def procrastinate_baseline(
    url: str, events: int, processes: int, concurrency: int, args, *, backlog: bool = False
) -> float:
    """Jobs/s from the first defer to the last job succeeded; with ``backlog`` the jobs are
    deferred for later before the workers start and made due by one UPDATE."""
    import psycopg

    env = common.env_for(url, BENCH_PROCRASTINATE_DB=url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE procrastinate_jobs CASCADE")
    worker = [sys.executable, "-m", "procrastinate", "-a", "benchmarks.procrastinate_app.app"]
    worker += ["worker", "--concurrency", str(concurrency)]
    # Jobs made due by an UPDATE send no notification: poll often, as our dispatcher does.
    worker += ["--fetch-job-polling-interval", "0.05"]
    if backlog:
        common.produce(functools.partial(_defer_noop, later=True), events, args.producers)
    procs = [common.start(worker, env, LOGS / "bench-procrastinate.log") for _ in range(processes)]

    def done() -> bool:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
            ).fetchone()
        return row[0] >= events

    try:
        time.sleep(BOOT)
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


# --- DBOS Transact -------------------------------------------------------------------


def _dbos_succeeded(dbos_url: str, events: int) -> Callable[[], bool]:
    import psycopg

    def done() -> bool:
        with psycopg.connect(dbos_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
            ).fetchone()
        return row[0] >= events

    return done


def _dbos_clear(dbos_url: str) -> None:
    import psycopg

    with psycopg.connect(dbos_url, autocommit=True) as conn:
        conn.execute("TRUNCATE dbos.workflow_status CASCADE")


def _dbos_launch_once() -> None:
    """Launch DBOS once in a child process, which creates its schema."""
    from dbos import DBOS

    from benchmarks import dbos_app

    dbos_app.launch("bench-setup")
    DBOS.destroy()


def dbos_setup(dbos_url: str) -> None:
    import multiprocessing

    os.environ["BENCH_DBOS_DB"] = dbos_url
    child = multiprocessing.get_context("fork").Process(target=_dbos_launch_once)
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"DBOS failed to launch (exit code {child.exitcode})")


def dbos_queue(
    url: str, dbos_url: str, events: int, processes: int, concurrency: int, args, *, backlog
) -> float:
    """Workflows/s from the first enqueue to the last workflow succeeded; with ``backlog``
    they are enqueued while the queue's worker concurrency is 0, and the clock starts when
    it is raised."""
    from benchmarks import dbos_app

    _dbos_clear(dbos_url)
    jobs = dbos_app.client()
    queue = jobs.register_queue(
        DBOS_QUEUE,
        worker_concurrency=0 if backlog else concurrency,
        polling_interval_sec=args.dbos_poll,
    )
    send = functools.partial(dbos_app.enqueue, DBOS_QUEUE)
    if backlog:
        common.produce(send, events, args.producers)
    env = common.env_for(url, BENCH_DBOS_DB=dbos_url)
    worker = [sys.executable, "-m", "benchmarks.dbos_app"]
    procs = [
        common.start([*worker, f"bench-{n}"], env, LOGS / "bench-dbos.log")
        for n in range(processes)
    ]
    try:
        time.sleep(BOOT)
        started = time.perf_counter()
        if backlog:
            queue.set_worker_concurrency(concurrency)
        else:
            common.produce(send, events, args.producers)
        common.wait_for(
            _dbos_succeeded(dbos_url, events), args.timeout, "every DBOS workflow", step=POLL
        )
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            common.stop(proc)
        jobs.destroy()
    return events / elapsed


def _dbos_direct_producer(barrier, share: range) -> None:
    from dbos import DBOS

    from benchmarks import dbos_app

    dbos_app.launch(f"bench-direct-{share.start}")
    barrier.wait()
    dbos_app.run_directly(share)
    DBOS.destroy()


def dbos_direct(dbos_url: str, events: int, args) -> float:
    """Workflows/s when each producer process launches DBOS and calls the workflow for each
    of its events: timed from all producers launched to the last workflow succeeded."""
    import multiprocessing

    _dbos_clear(dbos_url)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(args.producers + 1)
    producers = [
        context.Process(target=_dbos_direct_producer, args=(barrier, share))
        for share in [range(n, events, args.producers) for n in range(args.producers)]
    ]
    for producer in producers:
        producer.start()
    try:
        barrier.wait(timeout=60)
        started = time.perf_counter()
        common.wait_for(
            _dbos_succeeded(dbos_url, events), args.timeout, "every DBOS workflow", step=POLL
        )
        elapsed = time.perf_counter() - started
    finally:
        for producer in producers:
            producer.join(30)
            if producer.is_alive():
                producer.kill()
    failed = [p.exitcode for p in producers if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"DBOS producers failed (exit codes {failed})")
    return events / elapsed


# --- shape selection and the report ---------------------------------------------------

Measure = Callable[[tuple[int, int], int, bool], float]


@dataclass
class System:
    name: str
    shapes: list[tuple[int, int]]
    label: Callable[[tuple[int, int]], str]
    measure: Measure
    drains: bool = True
    #: Filled in by ``select``: (shape, end to end, drain) for each shape tried.
    tried: list[tuple[tuple[int, int], float, float | None]] = field(default_factory=list)
    best: tuple[int, int] | None = None
    best_drain: tuple[int, int] | None = None
    #: The best shapes measured again at full size.
    end_to_end: float = 0.0
    drain: float | None = None


def select(system: System, events: int) -> None:
    """Measure every shape with ``events`` per cell; keep the best for each measure."""
    if len(system.shapes) == 1:
        system.best = system.best_drain = system.shapes[0]
        return
    for shape in system.shapes:
        e2e = system.measure(shape, events, False)
        drain = system.measure(shape, events, True) if system.drains else None
        system.tried.append((shape, e2e, drain))
        shown = f", drain {drain:,.0f}/s" if drain is not None else ""
        progress(f"{system.name} {system.label(shape)}: end to end {e2e:,.0f}/s{shown}")
    system.best = max(system.tried, key=lambda t: t[1])[0]
    if system.drains:
        system.best_drain = max(system.tried, key=lambda t: t[2] or 0.0)[0]


#: How many of a system's best shapes (by the selection's smaller cells) are measured
#: again at full size: a shape that leads with a few thousand events is not always the one
#: that leads with ten thousand, whichever system it is.
FINALISTS = 2


def measure_best(system: System, events: int) -> None:
    assert system.best is not None
    system.best, system.end_to_end = _best_at_size(system, events, backlog=False)
    if system.drains:
        assert system.best_drain is not None
        system.best_drain, system.drain = _best_at_size(system, events, backlog=True)
    shown = (
        f", drain {system.drain:,.0f}/s ({system.label(system.best_drain)})"
        if system.drain is not None and system.best_drain is not None
        else ""
    )
    progress(
        f"{system.name} at its best: end to end {system.end_to_end:,.0f}/s "
        f"({system.label(system.best)}){shown}"
    )


def _best_at_size(system: System, events: int, *, backlog: bool) -> tuple[tuple[int, int], float]:
    """The best of the system's :data:`FINALISTS` leading shapes, measured at full size."""
    chosen = system.best_drain if backlog else system.best
    assert chosen is not None
    column = 2 if backlog else 1
    ranked = sorted(system.tried, key=lambda t: t[column] or 0.0, reverse=True)
    finalists = [t[0] for t in ranked[:FINALISTS]] or [chosen]
    rates = {shape: system.measure(shape, events, backlog) for shape in finalists}
    for shape, rate in rates.items():
        what = "drain" if backlog else "end to end"
        progress(f"{system.name} {system.label(shape)}, {what} at full size: {rate:,.0f}/s")
    best = max(rates, key=lambda shape: rates[shape])
    return best, rates[best]


def _shapes(text: str, default: int = 1) -> list[tuple[int, int]]:
    """``"1x1,2x8"`` -> [(1, 1), (2, 8)]; a bare ``"2"`` is (2, ``default``)."""
    shapes = []
    for item in text.split(","):
        processes, _, concurrency = item.strip().partition("x")
        shapes.append((int(processes), int(concurrency or default)))
    return shapes


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return "—" if not ours or not theirs else f"{ours / theirs:.2f}x"


def _trial(args, systems: list[System]) -> None:
    """Measure only the systems ``--systems`` names, at their first shape: A/B trials."""
    from django.db import connections

    wanted = {name.strip() for name in args.systems.split(",")}
    for system in systems:
        if system.name.split(",")[0] not in wanted:
            continue
        shape = system.shapes[0]
        e2e = system.measure(shape, args.events, False)
        drain = None if args.no_drain else system.measure(shape, args.events, True)
        shown = f", drain {drain:,.0f}/s" if drain is not None else ""
        progress(f"{system.name} {system.label(shape)}: end to end {e2e:,.0f}/s{shown}")
    connections.close_all()
    common.drop_database(args.database)
    common.drop_database(args.dbos_database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000, help="events per final cell")
    parser.add_argument(
        "--shape-events",
        type=int,
        default=0,
        help="events per shape-selection cell (default: a fifth of --events)",
    )
    parser.add_argument(
        "--workers",
        default="1,2,4,1x1,2x1,4x1",
        help="our worker processes x DISPATCH_MAX_BATCHES_IN_FLIGHT per process (bare: 2)",
    )
    parser.add_argument("--batch", type=int, default=100, help="outbox claim batch")
    parser.add_argument(
        "--procrastinate-shapes",
        default="1x1,2x1,2x8,1x16",
        help="procrastinate worker processes x --concurrency",
    )
    parser.add_argument("--celery-workers", default="2,4", help="bare Celery prefork processes")
    parser.add_argument(
        "--dbos-shapes", default="1x8,2x8,2x32", help="DBOS processes x worker_concurrency"
    )
    parser.add_argument(
        "--dbos-poll", type=float, default=0.05, help="DBOS queue polling interval, s"
    )
    parser.add_argument(
        "--producers", type=int, default=2, help="processes inserting/deferring/sending at once"
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--database", default=DB, help="our (and procrastinate's) database")
    parser.add_argument("--dbos-database", default=DBOS_DB, help="DBOS's system database")
    parser.add_argument(
        "--no-write", action="store_true", help="print the report, don't append it to the docs"
    )
    parser.add_argument(
        "--systems",
        default="",
        help="trials: only these systems (comma-separated: ours, procrastinate); prints "
        "their figures and writes no report",
    )
    parser.add_argument("--no-drain", action="store_true", help="trials: measure end to end only")
    args = parser.parse_args()
    if args.no_write:
        os.environ["BENCH_NO_WRITE"] = "1"
    shape_events = args.shape_events or max(args.events // 5, 100)

    url = common.scratch_database(args.database)
    dbos_url = common.scratch_database(args.dbos_database)
    common.migrate_and_setup(url, CELERY_BROKER_URL=common.REDIS_URL)
    common.create_noop_workflow("Bench no-ops", "pull_request")
    common.create_noop_workflow("Bench non-idempotent no-ops", "push", idempotent=False)
    procrastinate_schema(url)
    from django.db import connections

    connections.close_all()
    dbos_setup(dbos_url)

    def processes(shape: tuple[int, int]) -> str:
        return f"{shape[0]} process{'es' if shape[0] > 1 else ''}"

    def with_batches(shape: tuple[int, int]) -> str:
        batches = shape[0] * shape[1]
        return f"{processes(shape)}, {batches} batch{'es' if batches > 1 else ''} in flight"

    def by_concurrency(shape: tuple[int, int]) -> str:
        return f"{shape[0]}x{shape[1]}"

    ours_system = System(
        "ours",
        _shapes(args.workers, default=2),
        with_batches,
        lambda shape, n, backlog: ours(
            url, n, shape[0], args, backlog=backlog, batches_per_process=shape[1]
        ),
    )
    baselines = [
        System(
            "procrastinate, async no-op",
            _shapes(args.procrastinate_shapes),
            by_concurrency,
            lambda shape, n, backlog: procrastinate_baseline(
                url, n, shape[0], shape[1], args, backlog=backlog
            ),
        ),
        System(
            "DBOS, via a queue",
            _shapes(args.dbos_shapes),
            by_concurrency,
            lambda shape, n, backlog: dbos_queue(
                url, dbos_url, n, shape[0], shape[1], args, backlog=backlog
            ),
        ),
        System(
            "DBOS, started directly",
            [(args.producers, 1)],
            lambda shape: f"{shape[0]} producers, each its own worker",
            lambda shape, n, backlog: dbos_direct(dbos_url, n, args),
            drains=False,
        ),
        System(
            "bare Celery, default acks (early), prefetch 4",
            _shapes(args.celery_workers),
            processes,
            lambda shape, n, backlog: bare_celery(
                url, n, shape[0], args, durable=False, backlog=backlog
            ),
        ),
        System(
            "bare Celery, acks_late, prefetch 1",
            _shapes(args.celery_workers),
            processes,
            lambda shape, n, backlog: bare_celery(
                url, n, shape[0], args, durable=True, backlog=backlog
            ),
        ),
    ]
    # Non-idempotent steps wait for a durable commit before and after each call, so their
    # best shape is not the idempotent one's: they get a shape selection of their own.
    strict_system = System(
        "ours, non-idempotent no-ops",
        _shapes(args.workers, default=2),
        with_batches,
        lambda shape, n, backlog: ours(
            url, n, shape[0], args, event_type="push", batches_per_process=shape[1]
        ),
        drains=False,
    )
    systems = [ours_system, strict_system, *baselines]
    if args.systems:
        _trial(args, [ours_system, baselines[0]])
        return
    progress(f"shape selection, {shape_events} events per cell")
    for system in systems:
        select(system, shape_events)
    progress(f"the best shapes, {args.events} events per cell")
    for system in systems:
        measure_best(system, args.events)
    assert ours_system.best is not None and ours_system.best_drain is not None
    top, top_drain = ours_system.best, ours_system.best_drain
    on_e2e = ours(url, args.events, top[0], args, observability="on", batches_per_process=top[1])
    on_drain = ours(
        url,
        args.events,
        top_drain[0],
        args,
        backlog=True,
        observability="on",
        batches_per_process=top_drain[1],
    )
    progress(f"ours, traces and metrics on: end to end {on_e2e:,.0f}/s, drain {on_drain:,.0f}/s")

    connections.close_all()
    common.drop_database(args.database)
    common.drop_database(args.dbos_database)

    def at(system: System, value: float | None, shape: tuple[int, int] | None) -> str:
        return "—" if value is None or shape is None else f"{value:,.0f} ({system.label(shape)})"

    headline = [
        [
            "**ours**, idempotent no-ops",
            "—",
            "—",
            at(ours_system, ours_system.end_to_end, ours_system.best),
            at(ours_system, ours_system.drain, ours_system.best_drain),
        ],
        [
            strict_system.name,
            "—",
            "—",
            at(strict_system, strict_system.end_to_end, strict_system.best),
            "—",
        ],
    ]
    for system in baselines:
        headline.append(
            [
                system.name,
                _ratio(ours_system.end_to_end, system.end_to_end),
                _ratio(ours_system.drain, system.drain),
                at(system, system.end_to_end, system.best),
                at(system, system.drain, system.best_drain if system.drains else None),
            ]
        )
    shape_rows = []
    for system in systems:
        for shape, e2e, drain in system.tried:
            picked = [
                what
                for what, best in [("end to end", system.best), ("drain", system.best_drain)]
                if best == shape and (what == "end to end" or system.drains)
            ]
            shape_rows.append(
                [system.name, system.label(shape), _rate(e2e), _rate(drain), ", ".join(picked)]
            )
    observability_rows = [
        [
            f"end to end ({with_batches(ours_system.best)})",
            _ratio(on_e2e, ours_system.end_to_end),
            _rate(ours_system.end_to_end),
            _rate(on_e2e),
        ],
        [
            f"backlog drain ({with_batches(ours_system.best_drain)})",
            _ratio(on_drain, ours_system.drain),
            _rate(ours_system.drain),
            _rate(on_drain),
        ],
    ]
    procrastinate = baselines[0]

    def met(ratio: float, want: float) -> str:
        return f"{ratio:.2f}x, {'met' if ratio >= want else 'missed'}"

    goal = (
        f"drain {met((ours_system.drain or 0) / (procrastinate.drain or 1), 2)}; "
        f"end to end {met(ours_system.end_to_end / procrastinate.end_to_end, 1.5)}; "
        "non-idempotent against idempotent, each at its best shape, end to end "
        f"{met(strict_system.end_to_end / ours_system.end_to_end, 0.5)}"
    )
    body = "\n\n".join(
        [
            f"Each system at its best shape, {args.events} events per cell, events/s:",
            common.table(
                [
                    "system",
                    "ours / it, end to end",
                    "ours / it, backlog drain",
                    "end to end (best shape)",
                    "backlog drain (best shape)",
                ],
                headline,
            ),
            f"Shapes measured to pick each best, {shape_events} events per cell, events/s "
            "(processes x concurrency per process):",
            common.table(
                ["system", "shape", "end to end", "backlog drain", "best for"], shape_rows
            ),
            f"Ours with traces and metrics on and off, {args.events} events per cell, events/s:",
            common.table(["ours", "on / off", "off", "on"], observability_rows),
        ]
    )
    notes = (
        "End to end: events inserted/deferred/enqueued/sent by "
        f"{args.producers} processes at once (each one at a time, a commit per event, as "
        "webhook requests would) while the workers run, timed from the first to the last "
        "event done; all on the same 2 CPUs. Backlog drain: the same events stored first, "
        "timed from the moment they are all made available (ours and procrastinate: one "
        "UPDATE makes them due; DBOS: the queue's worker concurrency raised from 0; Celery: "
        "the worker told to consume their queue) to the last one done. Ours: two no-op "
        "steps per event (a WorkflowRun and two StepRuns written), declared idempotent; the "
        "non-idempotent row commits each step's `running` record before its call and its "
        "result after, so it waits for the disk twice per step and has a shape selection of "
        f"its own (end to end); outbox claim batch {args.batch}, Celery prefork with N processes "
        "(prefetch 4), one dispatcher process with `DISPATCH_MAX_BATCHES_IN_FLIGHT` N or 2N "
        "(the shape's batches in flight: 2N keeps a batch waiting for each busy process, N "
        "makes fewer, larger batches while the producers set the pace); "
        "traces and metrics off "
        "(`BENCH_OBSERVABILITY=off`) except in the last table, where `on` runs the "
        "dispatcher and the Celery workers with an SDK tracer provider (spans dropped by the "
        "exporter) and prometheus-client writing to `PROMETHEUS_MULTIPROC_DIR`. "
        "procrastinate: an async no-op task, P `procrastinate worker --concurrency C` "
        "processes polling every 0.05 s. DBOS Transact: a workflow of two no-op steps (the "
        "workflow and each step's outcome recorded), on its own database on the same "
        f"server; queue polled every {args.dbos_poll} s, P worker processes with "
        "`worker_concurrency` C; started directly: each producer process launches DBOS and "
        "calls the workflow. Bare Celery: one task per event writing one row, no outbox; "
        "Celery's default acknowledges a message when the worker takes it (lost if the "
        "worker dies), acks_late with prefetch 1 after the task ran. Each system's shapes "
        f"were measured first ({shape_events} events per cell); its {FINALISTS} best shapes "
        "for each measure were then measured again at full size, and the better one leads "
        "the first table. Goal (issue 19: ours at 2x "
        "procrastinate's best drain and 1.5x its best end to end; non-idempotent steps at "
        f"0.5x idempotent ones): {goal}."
    )
    common.report(
        "Pipeline: outbox -> Celery on Redis -> two-step workflow, against each baseline's "
        "best shape",
        body,
        notes,
    )
    progress("done")


if __name__ == "__main__":
    main()

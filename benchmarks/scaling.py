"""Scaling: events/s against worker processes and against outbox size; memory per worker.

    python -m benchmarks.scaling [--events 4000] [--workers 1,2,4,8] [--history 1000000]
                                 [--no-write]

The workflow is the pipeline benchmark's: two idempotent no-op steps per event (a
WorkflowRun and two StepRuns written, the outbox row settled). Two tables:

1. **Worker processes** (``--workers``): a backlog drain, ``--events`` events stored (one
   INSERT ... SELECT) before the workers start, timed from the one UPDATE that makes them
   due to the last run completed, with the embedded worker (that many ``automate_worker``
   processes of one thread each) and in Celery mode (one ``automate_worker
   --dispatch-only`` and a prefork Celery worker with that many pool processes, Redis
   broker); then end to end with the embedded worker (``--producers`` processes enqueue
   the events, one INSERT each, while the workers run). After each drain, the resident
   memory (VmRSS, and PSS, which splits shared pages between the processes sharing them)
   of every worker process.
2. **Outbox size**: an empty outbox, then ``--history`` settled (``done``) events already
   in it (one INSERT ... SELECT, then VACUUM ANALYZE): new events enqueued per second
   (each INSERT probes the ``(connector, external_id)`` unique index), repeats enqueued
   per second (the dedupe path: that INSERT fails on the index and the first row is
   read), one empty poll (what an idle worker does: the claim with nothing due; and the
   same with the reclaim of expired leases, as once a second), and the backlog drain
   with ``--size-workers`` embedded processes.

Why the worker curve flattens on a 2-CPU machine: the no-op workflow is CPU work. A
worker process spends about 0.8 ms of CPU per event and waits the rest of its 1 ms for
PostgreSQL, which spends CPU on the event's four rows meanwhile (``python -m
benchmarks.profile_pipeline``); the workers, PostgreSQL and, end to end, the producers
all run on the same two CPUs. So one process keeps most of one CPU busy and two, with
PostgreSQL, fill both: from there more processes add no CPU, only contention (rows
skipped by the other claims, context switches, more connections), and the curve goes
flat or down. The Celery column also pays for the dispatcher, the broker and the pool's
parent on those CPUs. On a machine with more CPUs the curve climbs further, until
PostgreSQL's write path (one WAL, the outbox's indexes) is the limit.

Why history should not matter: the claim reads the partial index of due rows, which
settled rows leave, and a dedupe check is one probe of a unique index whose depth grows
with the logarithm of its size.

Trial runs: ``--database NAME`` (a scratch database of your own) and ``--no-write`` (or
``BENCH_NO_WRITE=1``; ``--report -`` still means the same): print the tables, append
nothing to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks import common

DB = "automate_bench_scaling"
EVENT = "pull_request"
# How often a cell asks whether everything is done (a count and a probe by primary key).
POLL = 0.1
LOGS = Path(os.environ.get("BENCH_LOG_DIR", "/tmp"))

# ``n`` events of the bench workflow's type, in one statement: settled history (status
# 'done', created over the last ``age`` seconds) or a backlog ('pending', due in ``due_in``
# seconds). Payloads have the shape of the pipeline benchmark's events.
EVENTS_SQL = """
INSERT INTO automate_core_outboxitem (
    connector_key, event_type, external_id, payload, headers, trace_id, trace_context,
    status, attempts, available_at, created_at, updated_at, completed_at,
    lease_token, leased_by
)
SELECT 'github', %(event)s, %(prefix)s::text || i,
    jsonb_build_object('action', 'opened', 'number', i), '{}', md5(%(prefix)s::text || i), '',
    %(status)s, %(attempts)s,
    now() + make_interval(secs => %(due_in)s::float8 - %(age)s::float8 * (%(n)s - i) / %(n)s),
    now() - make_interval(secs => %(age)s::float8 * (%(n)s - i) / %(n)s), now(),
    CASE WHEN %(status)s = 'done' THEN now() END, '', ''
FROM generate_series(1, %(n)s) AS i
"""


def _insert_events(n: int, *, prefix: str, done: bool, due_in: float = 0, age: float = 0) -> None:
    from django.db import connection

    params = {
        "event": EVENT,
        "prefix": prefix,
        "n": n,
        "status": "done" if done else "pending",
        "attempts": 1 if done else 0,
        "due_in": due_in,
        "age": age,
    }
    with connection.cursor() as cursor:
        cursor.execute(EVENTS_SQL, params)


def _last_id() -> int:
    from django.db.models import Max

    from automate_core.models import OutboxItem

    return OutboxItem.objects.aggregate(last=Max("id"))["last"] or 0


def _clean(mark: int, *, analyze: bool = False) -> None:
    """Remove the runs and the events after ``mark``, and vacuum, so every cell starts
    from the same tables."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE automate_steprun, automate_workflowrun CASCADE")
        cursor.execute("DELETE FROM automate_core_outboxitem WHERE id > %s", [mark])
        verb = "VACUUM ANALYZE" if analyze else "VACUUM"
        for table in ("automate_core_outboxitem", "automate_workflowrun", "automate_steprun"):
            cursor.execute(f"{verb} {table}")


def _settled(mark: int, events: int) -> bool:
    from automate.models import RunStatus, WorkflowRun
    from automate_core.models import OutboxItem

    return (
        WorkflowRun.objects.filter(status=RunStatus.COMPLETED).count() >= events
        and not OutboxItem.objects.filter(id__gt=mark).exclude(status="done").exists()
    )


def _memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of process ``pid`` in MiB; 0 where /proc does not say."""
    values = {}
    for name, key in (("status", "VmRSS:"), ("smaps_rollup", "Pss:")):
        try:
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    values[key] = int(line.split()[1]) / 1024
                    break
        except OSError:
            pass
    return values.get("VmRSS:", 0.0), values.get("Pss:", 0.0)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


class Workers:
    """``count`` worker processes of one mode, started (and ready) and stopped together."""

    #: What each ``automate_worker`` prints once it is set up and about to poll.
    READY = ("automate worker running", "automate dispatcher sending")

    def __init__(self, mode: str, count: int, url: str, args) -> None:
        self.mode = mode
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        self.celery_name = ""
        worker = [sys.executable, "-m", "django", "automate_worker"]
        worker += ["--batch", str(args.batch), "--poll", "0.05"]
        if mode == "embedded":
            env = common.env_for(url, PYTHONUNBUFFERED="1")
            for n in range(count):
                self._start([*worker, "--threads", "1"], env, f"worker-{n}")
        else:
            queue_name = f"bench-scaling-{uuid.uuid4().hex[:8]}"
            self.celery_name = f"{queue_name}@{socket.gethostname()}"
            env = common.env_for(
                url,
                PYTHONUNBUFFERED="1",
                CELERY_BROKER_URL=common.REDIS_URL,
                BENCH_QUEUE=queue_name,
            )
            celery = [
                *[sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker"],
                *["--pool", "prefork", "--concurrency", str(count), "--queues", queue_name],
                *["--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
                *["--prefetch-multiplier", "4", "--hostname", self.celery_name],
            ]
            self.procs.append(common.start(celery, env, LOGS / "bench-scaling-celery.log"))
            self._start([*worker, "--dispatch-only"], env, "dispatcher")
        try:
            common.wait_for(self._ready, 120, f"{count} {mode} workers to start", step=0.1)
        except BaseException:
            self.stop()
            raise

    def _start(self, command: list[str], env: dict[str, str], name: str) -> None:
        log = LOGS / f"bench-scaling-{name}.log"
        log.unlink(missing_ok=True)
        self.logs.append(log)
        self.procs.append(common.start(command, env, log))

    def _ready(self) -> bool:
        """Every ``automate_worker`` has said it is polling, and the Celery worker (whose
        pool starts before it consumes) answers a ping."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited with {proc.returncode}: see {LOGS}")
        for log in self.logs:
            text = log.read_text() if log.exists() else ""
            if not any(line in text for line in self.READY):
                return False
        if not self.celery_name:
            return True
        from benchmarks.celery_app import app

        app.conf.broker_url = common.REDIS_URL
        return bool(app.control.ping(destination=[self.celery_name], timeout=0.5))

    def memory(self) -> dict[str, list[tuple[float, float]]]:
        """(RSS, PSS) in MiB of each process that executes workflows, and of the others."""
        if self.mode == "embedded":
            return {"workers": [_memory(p.pid) for p in self.procs]}
        celery, dispatcher = self.procs
        return {
            "workers": [_memory(pid) for pid in _children(celery.pid)],
            "others": [_memory(celery.pid), _memory(dispatcher.pid)],
        }

    def stop(self) -> None:
        for proc in self.procs:
            common.stop(proc)


def drain(url: str, mode: str, count: int, events: int, mark: int, args):
    """Events/s of a backlog drain, and the workers' memory after it."""
    from django.db import connections
    from django.utils import timezone

    from automate_core.models import OutboxItem

    _insert_events(events, prefix=f"backlog-{uuid.uuid4().hex[:8]}-", done=False, due_in=3600)
    connections.close_all()
    workers = Workers(mode, count, url, args)
    try:
        started = time.perf_counter()
        OutboxItem.objects.filter(id__gt=mark).update(available_at=timezone.now())
        wait = functools.partial(_settled, mark, events)
        common.wait_for(wait, args.timeout, "the backlog to drain", step=POLL)
        elapsed = time.perf_counter() - started
        memory = workers.memory()
    finally:
        workers.stop()
    _clean(mark)
    print(f"drain, {mode} x{count}: {events / elapsed:,.0f} events/s; MiB (RSS, PSS): {memory}")
    return events / elapsed, memory


def end_to_end(url: str, count: int, events: int, mark: int, args) -> float:
    """Events/s from the first enqueue to the last run done, embedded workers running."""
    from django.db import connections

    connections.close_all()
    workers = Workers("embedded", count, url, args)
    try:
        started = time.perf_counter()
        send = functools.partial(common.enqueue_noop_events, f"e2e-{uuid.uuid4().hex[:8]}", EVENT)
        common.produce(send, events, args.producers)
        wait = functools.partial(_settled, mark, events)
        common.wait_for(wait, args.timeout, "every run to complete", step=POLL)
        elapsed = time.perf_counter() - started
    finally:
        workers.stop()
    _clean(mark)
    print(f"end to end, embedded x{count}: {events / elapsed:,.0f} events/s", flush=True)
    return events / elapsed


def _mib(values: list[tuple[float, float]]) -> str:
    """'mean RSS / mean PSS' of some processes."""
    if not values:
        return "-"
    rss = sum(v[0] for v in values) / len(values)
    pss = sum(v[1] for v in values) / len(values)
    return f"{rss:.0f} / {pss:.0f}"


def scale_workers(url: str, args) -> list[list[object]]:
    rows = []
    for count in [int(w) for w in args.workers.split(",")]:
        embedded, embedded_memory = drain(url, "embedded", count, args.events, 0, args)
        celery, celery_memory = drain(url, "celery", count, args.events, 0, args)
        e2e = end_to_end(url, count, args.events, 0, args)
        rows.append(
            [
                count,
                f"{embedded:,.0f}",
                f"{e2e:,.0f}",
                _mib(embedded_memory["workers"]),
                f"{celery:,.0f}",
                _mib(celery_memory["workers"]),
                "parent {}, dispatcher {}".format(*(_mib([m]) for m in celery_memory["others"])),
            ]
        )
        print(rows[-1], flush=True)
    return rows


def _enqueue_rate(prefix: str, events: int, producers: int) -> float:
    from django.db import connections

    connections.close_all()
    started = time.perf_counter()
    common.produce(functools.partial(common.enqueue_noop_events, prefix, EVENT), events, producers)
    return events / (time.perf_counter() - started)


def _empty_poll_ms(batch: int, *, reclaim: bool, polls: int = 200) -> float:
    """Mean time of one claim (``dispatch.claim``, as every worker poll) with nothing due;
    with ``reclaim``, as a worker's first poll and then one poll a second
    (``dispatch.RECLAIM_SECONDS``): expired leases returned and dead runs swept first."""
    from automate import dispatch

    assert not dispatch.claim(batch)
    started = time.perf_counter()
    for _ in range(polls):
        dispatch.claim(batch, reclaim=reclaim)
    return (time.perf_counter() - started) / polls * 1000


def outbox_size_row(url: str, label: str, mark: int, args) -> list[object]:
    from django.db import connection

    prefix = f"size-{uuid.uuid4().hex[:8]}"
    new = _enqueue_rate(prefix, args.events, args.producers)
    repeats = _enqueue_rate(prefix, args.events, args.producers)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM automate_core_outboxitem WHERE id > %s AND external_id LIKE %s",
            [mark, f"{prefix}-%"],
        )
        stored = cursor.fetchone()[0]
    assert stored == args.events, f"{stored} rows stored for {args.events} events and repeats"
    _clean(mark)
    poll = _empty_poll_ms(args.batch, reclaim=False)
    reclaiming = _empty_poll_ms(args.batch, reclaim=True)
    rate, _ = drain(url, "embedded", args.size_workers, args.events, mark, args)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_total_relation_size('automate_core_outboxitem')")
        size = cursor.fetchone()[0] / 1024 / 1024
    row = [label, f"{size:,.0f}", f"{new:,.0f}", f"{repeats:,.0f}"]
    row += [f"{poll:.2f}", f"{reclaiming:.2f}", f"{rate:,.0f}"]
    print(row, flush=True)
    return row


def scale_outbox(url: str, args) -> tuple[list[list[object]], float]:
    from django.db import connection

    rows = [outbox_size_row(url, "empty", 0, args)]
    started = time.perf_counter()
    _insert_events(args.history, prefix="history-", done=True, age=30 * 86400)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE automate_core_outboxitem")
    fill = time.perf_counter() - started
    print(f"{args.history:,} settled events stored and vacuumed in {fill:.1f} s", flush=True)
    label = f"{args.history:,} settled events"
    rows.append(outbox_size_row(url, label, _last_id(), args))
    return rows, fill


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=4_000, help="events per cell")
    parser.add_argument("--workers", default="1,2,4,8", help="worker process counts")
    parser.add_argument("--history", type=int, default=1_000_000, help="settled events")
    parser.add_argument(
        "--size-workers", type=int, default=2, help="embedded worker processes, outbox table"
    )
    parser.add_argument("--batch", type=int, default=100, help="outbox claim batch")
    parser.add_argument("--producers", type=int, default=2, help="processes enqueuing at once")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--database", default=DB, help="scratch database (dropped at the end)")
    parser.add_argument(
        "--no-write", action="store_true", help="print the tables, don't append them to the docs"
    )
    parser.add_argument(
        "--report",
        default=str(common.REPORT),
        help="file the tables are appended to; '-' is --no-write (kept for old command lines)",
    )
    args = parser.parse_args()
    if args.no_write or args.report == "-":
        os.environ["BENCH_NO_WRITE"] = "1"
    else:
        common.REPORT = Path(args.report)

    began = time.perf_counter()
    url = common.scratch_database(args.database)
    common.migrate_and_setup(url)
    from django.db import connection

    common.create_noop_workflow("Bench no-ops", EVENT)
    worker_rows = scale_workers(url, args)
    size_rows, fill = scale_outbox(url, args)
    connection.close()
    common.drop_database(args.database)
    print(f"whole run: {time.perf_counter() - began:.0f} s", flush=True)

    common.report(
        "Scaling: events/s against worker processes",
        common.table(
            [
                "worker processes",
                "embedded: drain, events/s",
                "embedded: end to end, events/s",
                "embedded: MiB per process (RSS / PSS)",
                "Celery: drain, events/s",
                "Celery: MiB per pool process (RSS / PSS)",
                "Celery: MiB of the others (RSS / PSS)",
            ],
            worker_rows,
        ),
        f"{args.events:,} events per cell, two idempotent no-op steps each. Drain: the "
        "events stored before the workers start, timed from the one UPDATE that makes them "
        "due to the last run completed. End to end: "
        f"{args.producers} processes enqueue them (one INSERT each) while the workers run. "
        "Embedded: that many `automate_worker` processes of one thread each. Celery: a "
        "prefork worker with that many pool processes, one `automate_worker "
        "--dispatch-only`, Redis broker. Outbox claim batch "
        f"{args.batch}. Memory read from /proc after the drain: RSS counts pages shared "
        "with other processes (a prefork pool shares its parent's), PSS divides them "
        "among the sharers. Everything, PostgreSQL and the broker too, runs on the same "
        f"{os.cpu_count()} CPUs: the curve flattens once they are busy (see the script's "
        "docstring).",
    )
    common.report(
        "Scaling: events/s against outbox size",
        common.table(
            [
                "outbox before the run",
                "outbox table, MiB",
                "enqueue new events/s",
                "enqueue repeats/s",
                "empty poll, ms",
                "with the reclaim, ms",
                "drain, events/s",
            ],
            size_rows,
        ),
        f"{args.events:,} events per cell. The settled events are stored by one INSERT ... "
        f"SELECT generate_series and a VACUUM ANALYZE ({fill:.0f} s). Enqueue: "
        f"{args.producers} processes call `queue.enqueue` with an external id, with no "
        "worker running; repeats: the same ids again (the unique index refuses each INSERT "
        "and the first row is read). Empty poll: the mean of 200 `dispatch.claim` calls "
        "with nothing due (fire due schedules, select due rows), one process; with the "
        "reclaim, as a worker's poll once a second: expired leases returned and dead runs "
        "swept as well. Drain: "
        f"{args.size_workers} embedded worker processes, as in the worker table.",
    )


if __name__ == "__main__":
    main()

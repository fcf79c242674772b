"""Parked runs: runs parked on ``delay`` and on ``wait_for_event`` resume, beside the plain
pipeline measured in the same run by the same workers.

    python -m benchmarks.parked [--runs 10000] [--workers 1,2,4] [--no-write]
                                [--database automate_bench_parked]

For each worker count, one set of workers (``automate_worker --dispatch-only`` handing
batches to a Celery prefork worker of that many processes on Redis, as in
``benchmarks.pipeline``) runs, in order:

* **plain**: ``--runs`` events of a two-step workflow of no-op steps, stored before the
  clock starts (not yet due); one UPDATE makes them due and starts the clock; it stops when
  every run is completed and every outbox item settled (the pipeline's backlog drain).
* **delay, parking**: ``--runs`` events start runs of ``[delay, no-op]`` whose delay lasts
  an hour; timed the same way until every run is ``waiting`` (reported, not the goal).
* **delay, resuming**: one UPDATE brings every delay's deadline (its wait's ``due_at`` and
  its timer's ``available_at``) to now, as if the hour had passed: the clock starts there
  and stops when every run is completed and every item settled. Each resumed run is one
  ``_resume`` item claimed, the wait and the run taken over, the delay's record finished
  and the no-op step run.
* **wait_for_event, parking**: ``--runs`` events start runs of ``[wait_for_event, no-op]``,
  each waiting for a ``parked.reply`` event whose ``key`` is its own; timed until every
  run is ``waiting`` and each wait's first timer (the catch-up look) has settled.
* **wait_for_event, resuming**: the ``--runs`` matching reply events are stored (not yet
  due) while the runs wait; one UPDATE makes them due and starts the clock, which stops
  when every run is completed and every item settled. The replies' *processing* is
  included (each is claimed, looked up in the waits' index, wins its wait and resumes
  its run in the same pass: one outbox item per resumed run); their *inserts* are not, as
  the plain drain does not count its events' inserts.
* **plain, again**: the plain drain once more, on the tables every phase above has grown.

Each clock starts after a ``VACUUM (ANALYZE)`` of the outbox, run, step and wait tables:
the phases follow each other's bulk writes within seconds, before autovacuum would visit,
and a later phase would otherwise pay for the dead index entries and stale statistics the
earlier ones left (the first, on fresh tables, for none). The ratios are against the
faster of the two plain drains.

Goal (issue 19): parked runs resume at 0.8x the plain pipeline's rate or more.

``--no-write`` prints the table without appending it to docs/benchmarks.md (trial runs);
``--database`` names the scratch PostgreSQL database (dropped and made again).
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import timedelta

from benchmarks import common

DB = "automate_bench_parked"
POLL = 0.1
GOAL = 0.8


def _store_events(event_type: str, payloads: list[dict]) -> None:
    """Store events not yet due (an hour from now), in bulk: their inserts are not timed."""
    from django.utils import timezone

    from automate_core.models import OutboxItem

    later = timezone.now() + timedelta(hours=1)
    prefix = uuid.uuid4().hex[:8]
    OutboxItem.objects.bulk_create(
        [
            OutboxItem(
                connector_key="github",
                event_type=event_type,
                payload=payload,
                external_id=f"{prefix}-{n}",
                trace_id=uuid.uuid4().hex,
                available_at=later,
            )
            for n, payload in enumerate(payloads)
        ],
        batch_size=1000,
    )


def _make_due(**filters) -> float:
    """Make the pending items matching ``filters`` due now; return the clock's start."""
    from django.utils import timezone

    from automate_core.models import OutboxItem

    started = time.perf_counter()
    OutboxItem.objects.filter(status="pending", **filters).update(available_at=timezone.now())
    return started


def _settled() -> bool:
    """No outbox item is due and unfinished (a delay's timer an hour away may wait)."""
    from django.utils import timezone

    from automate_core.models import OutboxItem

    return not OutboxItem.objects.filter(
        status__in=["pending", "failed", "leased"], available_at__lte=timezone.now()
    ).exists()


def _runs(workflow, status: str) -> int:
    from automate.models import WorkflowRun

    return WorkflowRun.objects.filter(workflow=workflow, status=status).count()


def _until(condition, args, what: str, started: float) -> float:
    common.wait_for(condition, args.timeout, what, step=POLL)
    return time.perf_counter() - started


def _vacuum() -> None:
    """``VACUUM (ANALYZE)`` the tables the phases write, before each clock starts.

    Each phase follows the bulk writes of the ones before within seconds, sooner than
    autovacuum would visit: without this, a later phase would pay for its predecessors'
    dead index entries and stale statistics (PostgreSQL then walks a partial index's dead
    entries, or picks a plan for an empty table), and the first phase, on fresh tables,
    for none. A long-running outbox is vacuumed by autovacuum; this gives every phase
    that state."""
    from django.db import connection

    from automate.flow.models import RunWait
    from automate.models import StepRun, WorkflowRun
    from automate_core.models import OutboxItem

    tables = ", ".join(
        connection.ops.quote_name(model._meta.db_table)
        for model in (OutboxItem, WorkflowRun, StepRun, RunWait)
    )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {tables}")


def _drain(args, event_type: str, payloads: list[dict], done, what: str) -> float:
    """Runs per second from one UPDATE making the stored events due until ``done()``."""
    _store_events(event_type, payloads)
    _vacuum()
    started = _make_due(event_type=event_type)
    return args.runs / _until(done, args, what, started)


def cell(workers: int, workflows: dict, args) -> dict[str, float]:
    """Rates (runs/s) of the six phases with one set of workers."""
    from django.db import connections
    from django.utils import timezone

    from automate.flow.models import RunWait, WaitKind
    from automate.models import RESUME_CONNECTOR_KEY, StepRun, WorkflowRun
    from automate_core.models import OutboxItem

    n = args.runs
    rates: dict[str, float] = {}
    _, procs = common.start_pipeline_workers(args.url, workers, batch=args.batch)
    try:
        time.sleep(4)  # let the workers boot before any clock starts
        # plain: the pipeline's backlog drain
        rates["plain"] = _drain(
            args,
            "pull_request",
            [{"action": "opened", "number": i} for i in range(n)],
            lambda: _runs(workflows["plain"], "completed") >= n and _settled(),
            "every plain run to complete",
        )

        # delay: park, then bring every deadline to now
        rates["delay_park"] = _drain(
            args,
            "parked.delay",
            [{"n": i} for i in range(n)],
            lambda: _runs(workflows["delay"], "waiting") >= n and _settled(),
            "every delayed run to park",
        )
        _vacuum()
        now = timezone.now()
        started = time.perf_counter()
        RunWait.objects.filter(kind=WaitKind.DELAY, status="waiting").update(due_at=now)
        OutboxItem.objects.filter(connector_key=RESUME_CONNECTOR_KEY, status="pending").update(
            available_at=now
        )
        elapsed = _until(
            lambda: _runs(workflows["delay"], "completed") >= n and _settled(),
            args,
            "every delayed run to resume and complete",
            started,
        )
        rates["delay"] = n / elapsed

        # wait_for_event: park, store the replies, make them due
        keys = [f"k{i}" for i in range(n)]
        rates["event_park"] = _drain(
            args,
            "parked.wait",
            [{"key": key} for key in keys],
            lambda: _runs(workflows["event"], "waiting") >= n and _settled(),
            "every waiting run to park",
        )
        rates["event"] = _drain(
            args,
            "parked.reply",
            [{"key": key} for key in reversed(keys)],
            lambda: _runs(workflows["event"], "completed") >= n and _settled(),
            "every waiting run to resume and complete",
        )

        # plain again, on the tables every phase above has grown
        plain_runs = n + _runs(workflows["plain"], "completed")
        rates["plain_again"] = _drain(
            args,
            "pull_request",
            [{"action": "opened", "number": i} for i in range(n)],
            lambda: _runs(workflows["plain"], "completed") >= plain_runs and _settled(),
            "every plain run to complete again",
        )
    finally:
        for proc in procs:
            common.stop(proc)
    assert not OutboxItem.objects.exclude(status="done").exists()
    assert StepRun.objects.filter(status="succeeded").count() == 2 * 4 * n
    assert not WorkflowRun.objects.exclude(status="completed").exists()
    print(f"x{workers}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()), flush=True)
    # A clean slate for the next cell.
    RunWait.objects.all().delete()
    StepRun.objects.all().delete()
    WorkflowRun.objects.all().delete()
    OutboxItem.objects.all().delete()
    connections.close_all()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10_000, help="runs per phase")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--batch", type=int, default=100, help="outbox claim batch")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--database", default=DB, help="scratch PostgreSQL database name")
    parser.add_argument(
        "--no-write", action="store_true", help="print only; do not append to docs/benchmarks.md"
    )
    args = parser.parse_args()

    args.url = common.scratch_database(args.database)
    common.migrate_and_setup(args.url, CELERY_BROKER_URL=common.REDIS_URL)
    workflows = common.parked_workflows()
    rows = []
    for workers in [int(w) for w in args.workers.split(",")]:
        rates = cell(workers, workflows, args)
        # Against the faster of the two plain drains: the ratio never gains from the
        # one the bigger tables slowed.
        plain = max(rates["plain"], rates["plain_again"])
        delay, event = rates["delay"] / plain, rates["event"] / plain
        rows.append(
            [
                workers,
                f"{delay:.2f}x",
                f"{event:.2f}x",
                "met" if min(delay, event) >= GOAL else "missed",
                f"{rates['plain']:,.0f} / {rates['plain_again']:,.0f}",
                f"{rates['delay']:,.0f}",
                f"{rates['event']:,.0f}",
                f"{rates['delay_park']:,.0f} / {rates['event_park']:,.0f}",
            ]
        )
        print(rows[-1], flush=True)
    from django.db import connection

    connection.close()
    common.drop_database(args.database)
    body = common.table(
        [
            "worker processes",
            "delay / plain",
            "wait_for_event / plain",
            f"goal (>= {GOAL}x)",
            "plain runs/s (first / last)",
            "delay: resumed runs/s",
            "wait_for_event: resumed runs/s",
            "parking runs/s (delay / wait_for_event)",
        ],
        rows,
    )
    notes = (
        f"{args.runs} runs per phase, all phases of a row with the same workers (one "
        f"dispatcher, outbox claim batch {args.batch}, a Celery prefork worker of that many "
        "processes on Redis). Plain: a two-step workflow of no-op steps, events stored "
        "beforehand and made due by one UPDATE (the clock starts there) until the last run "
        "is completed. Delay: runs of [delay, no-op] parked for an hour, then one UPDATE "
        "brings every deadline to now; timed from it until the last resumed run is "
        "completed. wait_for_event: runs of [wait_for_event, no-op], each matching its own "
        "key; the replies are stored while the runs wait and made due by one UPDATE; timed "
        "from it until the last run is completed, so the replies' processing is included "
        "(claim, index lookup, the run resumed in the reply's own pass), their inserts are not. "
        "Parking: the rate at which the same runs were started and parked. Plain runs "
        "first and again last, on the tables every phase has grown; the ratios are against "
        "the faster of the two. Each phase starts its clock after a VACUUM (ANALYZE) of the "
        "outbox, run, step and wait tables, as autovacuum would have left a long-running "
        "system (the phases follow each other's bulk writes within seconds)."
    )
    title = "Parked runs: delay and wait_for_event resume vs the plain pipeline"
    if args.no_write:
        print(f"\n### {title}\n\n{body}\n\n{notes}\n")
    else:
        common.report(title, body, notes)


if __name__ == "__main__":
    main()

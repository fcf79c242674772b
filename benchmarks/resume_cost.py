"""What resuming a batch of parked runs costs the worker: statements and CPU, by batch size,
next to the plain path's (``benchmarks/batch_cost.py``).

    python -m benchmarks.resume_cost [--sizes 1,10,100] [--repeat 5] [--show 10]
                                     [--profile delay|event|plain] [--profile-size 100]

The three workflows of ``benchmarks/parked.py``, on a scratch PostgreSQL database, all
in process: **plain** (two no-op steps: a batch of new events), **delay** (``[delay,
no-op]``: runs parked for an hour, then their deadlines brought to now; the batch is their
``_resume`` timers) and **event** (``[wait_for_event, no-op]``: runs parked and past their
first look; the batch is their replies, each winning its wait and resuming its run in the
same pass). Each batch is claimed as the dispatcher claims it and run through the Celery
task's own function (``automate.tasks.process_items``); only that call is measured. Prints
the statements per batch and the worker CPU (``time.process_time``) per batch and per
run; ``--show N`` lists the statements of one batch of size N; ``--profile`` runs
pyinstrument over ``--repeat`` batches of ``--profile-size`` of one path. Statement counts
do not depend on the machine's load; CPU a little.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import nullcontext

from benchmarks import common

DB = "h_resume_cost"

PATHS = ("plain", "delay", "event")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--show", type=int, default=0)
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--database", default=DB)
    parser.add_argument(
        "--backlog", type=int, default=0, help="runs of each path made first (table sizes)"
    )
    parser.add_argument("--profile", choices=PATHS, default=None)
    parser.add_argument("--profile-size", type=int, default=100)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    url = common.scratch_database(args.database)
    common.migrate_and_setup(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from automate import dispatch, tasks
    from automate.flow.models import RunWait
    from automate.models import RunStatus, WorkflowRun
    from automate_core.models import OutboxItem
    from automate_core.outbox import queue

    workflows = common.parked_workflows()
    counter = 0
    backend = common.backend_pid()

    def server_cpu() -> float:
        """The CPU seconds this connection's PostgreSQL backend has used (same machine)."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the backend is done with what came before
        return common.process_cpu(backend)

    def enqueue(event_type: str, size: int, payload: Callable[[int], dict]) -> list[int]:
        """Store ``size`` events; return their numbers (each payload is made from one)."""
        nonlocal counter
        numbers = []
        for _ in range(size):
            counter += 1
            numbers.append(counter)
            queue.enqueue(
                "github",
                event_type=event_type,
                payload=payload(counter),
                external_id=f"c-{counter}",
                trace_id=uuid.uuid4().hex,
            )
        return numbers

    def drain_all() -> None:
        """Process whatever is due, unmeasured (parking, first looks)."""
        while items := dispatch.claim(1000):
            dispatch.process_batch(items, checked=True)

    def prepare(path: str, size: int) -> None:
        """Leave exactly ``size`` due items of ``path``'s measured batch in the queue."""
        if path == "plain":
            enqueue("pull_request", size, lambda n: {"n": n})
        elif path == "delay":
            numbers = enqueue("parked.delay", size, lambda n: {"n": n})
            drain_all()  # parked for an hour
            now = timezone.now()
            waits = RunWait.objects.filter(
                status="waiting", run__event__payload__n__in=numbers, run__workflow=workflows[path]
            )
            timers = list(waits.values_list("timer_id", flat=True))
            waits.update(due_at=now)
            OutboxItem.objects.filter(pk__in=timers).update(available_at=now)
        else:
            numbers = enqueue("parked.wait", size, lambda n: {"key": f"k{n}"})
            drain_all()  # parked, and past the first timer's look
            for key in numbers:
                queue.enqueue(
                    "github",
                    event_type="parked.reply",
                    payload={"key": f"k{key}"},
                    trace_id=uuid.uuid4().hex,
                )

    def one_batch(
        path: str, size: int, capture: bool = False
    ) -> tuple[int, float, float, list[str]]:
        """Prepare and run one batch of ``path``: its statements (with ``capture``, which
        costs CPU of its own), the worker's CPU and the server's."""
        prepare(path, size)
        items = dispatch.claim(size)
        assert len(items) == size, (len(items), size)
        leases = [[item.pk, item.lease_token] for item in items]
        before = WorkflowRun.objects.filter(
            workflow=workflows[path], status=RunStatus.COMPLETED
        ).count()
        with CaptureQueriesContext(connection) if capture else nullcontext() as captured:
            server = server_cpu()
            started = time.process_time()
            counts = tasks.process_items(leases)
            cpu = time.process_time() - started
            server = server_cpu() - server
        assert counts == {"done": size}, counts
        after = WorkflowRun.objects.filter(
            workflow=workflows[path], status=RunStatus.COMPLETED
        ).count()
        assert after - before == size, (path, after - before, size)
        if not capture:
            return 0, cpu, server, []
        sqls = [q["sql"] for q in captured.captured_queries][1:-1]  # not server_cpu()'s
        return len(sqls), cpu, server, sqls

    paths = args.paths.split(",")
    if args.backlog:
        # Tables of the benchmark's size: completed plain runs, runs parked for an hour.
        enqueue("pull_request", args.backlog, lambda n: {"n": n})
        enqueue("parked.delay", args.backlog, lambda n: {"n": n})
        enqueue("parked.wait", args.backlog, lambda n: {"key": f"never{n}"})
        drain_all()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    for path in paths:
        one_batch(path, 3)  # warm: caches, connection, the version's steps
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        for _ in range(args.repeat):
            prepare(args.profile, args.profile_size)
            items = dispatch.claim(args.profile_size)
            leases = [[item.pk, item.lease_token] for item in items]
            profiler.start()
            tasks.process_items(leases)
            profiler.stop()
        print(profiler.output_text(unicode=False, color=False, show_all=False))
        connection.close()
        common.drop_database(args.database)
        return
    print(
        f"{'path':>6} {'size':>5} {'stmts/batch':>11} {'cpu ms/batch':>12} {'cpu ms/run':>10}"
        f" {'server ms/run':>13} {'both ms/run':>11} {'x plain':>8}"
    )
    plain_per_run: dict[int, float] = {}
    for size in sizes:
        for path in paths:
            stmts, _, _, sqls = one_batch(path, size, capture=True)
            runs = [one_batch(path, size) for _ in range(args.repeat)]
            cpu = statistics.median(r[1] for r in runs) * 1000 / size
            # The backend's clock ticks are coarse (10 ms): the sum over the repeats.
            server = sum(r[2] for r in runs) * 1000 / size / len(runs)
            if path == "plain":
                plain_per_run[size] = cpu + server
            both = cpu + server
            ratio = f"{plain_per_run[size] / both:>7.2f}x" if size in plain_per_run else ""
            print(
                f"{path:>6} {size:>5} {stmts:>11} {cpu * size:>12.2f} {cpu:>10.3f}"
                f" {server:>13.3f} {both:>11.3f} {ratio:>8}"
            )
            if size == args.show:
                for sql in sqls:
                    print(f"    {sql[:160]}")
    connection.close()
    common.drop_database(args.database)


if __name__ == "__main__":
    main()

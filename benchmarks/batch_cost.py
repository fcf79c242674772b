"""What one claimed batch costs the worker: statements and CPU, by batch size.

    python -m benchmarks.batch_cost [--sizes 1,10,100] [--repeat 5] [--show 1]

Enqueues events for the two-step no-op workflow (idempotent steps, the pipeline
benchmark's default; ``--non-idempotent``: its non-idempotent column's), claims them
the way the dispatcher does and runs each batch through the Celery task's own function
(``automate.tasks.process_items``), in process.
Prints the statements per batch and per event, the worker CPU (``time.process_time``)
per batch and per event and the CPU of the connection's PostgreSQL backend per event
(``/proc/<pg_backend_pid()>/stat``: the server must run on this machine); ``--show``
lists the statements of one batch of that size. Statement counts do not depend on the
machine's load; CPU a little.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from benchmarks import common

DB = "h_batchcost_cost"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--show", type=int, default=0)
    parser.add_argument("--database", default=DB)
    parser.add_argument("--profile", type=int, default=0, help="cProfile N batches")
    parser.add_argument("--profile-size", type=int, default=1)
    parser.add_argument(
        "--non-idempotent", action="store_true", help="the workflow's steps are not idempotent"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    url = common.scratch_database(args.database)
    common.migrate_and_setup(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from automate import dispatch, tasks
    from automate_core.outbox import queue

    common.create_noop_workflow("Bench no-ops", "pull_request", idempotent=not args.non_idempotent)
    counter = 0

    def one_batch(size: int) -> tuple[int, float, list[str]]:
        nonlocal counter
        for _ in range(size):
            counter += 1
            queue.enqueue(
                "github",
                event_type="pull_request",
                payload={"n": counter},
                external_id=f"c-{counter}",
                trace_id=uuid.uuid4().hex,
            )
        items = dispatch.claim(size)
        assert len(items) == size, (len(items), size)
        leases = [[item.pk, item.lease_token] for item in items]
        with CaptureQueriesContext(connection) as captured:
            started, server = time.process_time(), backend_cpu()
            counts = tasks.process_items(leases)
            cpu = time.process_time() - started
            server = backend_cpu() - server
        assert counts == {"done": size}, counts
        queries = [q["sql"] for q in captured.captured_queries]
        return len(queries), cpu, server, queries

    def backend_cpu() -> float:
        """This connection's PostgreSQL backend's CPU seconds (utime + stime)."""
        nonlocal backend
        if backend is None:
            backend = common.backend_pid()
        return common.process_cpu(backend)

    backend = None

    one_batch(3)  # warm: caches, connection
    print(
        f"{'size':>5} {'stmts/batch':>11} {'stmts/event':>11} "
        f"{'cpu ms/batch':>12} {'cpu ms/event':>12} {'server ms/event':>15}"
    )
    for size in sizes:
        runs = [one_batch(size) for _ in range(args.repeat)]
        stmts = runs[-1][0]
        cpu = statistics.median(r[1] for r in runs) * 1000
        # The backend's clock ticks are 10 ms: the sum over the repeats, not a median.
        server = sum(r[2] for r in runs) * 1000 / (size * len(runs))
        print(
            f"{size:>5} {stmts:>11} {stmts / size:>11.2f} {cpu:>12.2f} {cpu / size:>12.3f} "
            f"{server:>15.3f}"
        )
        if size == args.show:
            for sql in runs[-1][3]:
                print(f"    {sql[:150]}")
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(lambda: [one_batch(args.profile_size) for _ in range(args.profile)])
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    connection.close()
    common.drop_database(args.database)


if __name__ == "__main__":
    main()

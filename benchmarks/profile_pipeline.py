"""Where one worker's time goes: pyinstrument over claim + process_batch, in process.

    python -m benchmarks.profile_pipeline [--events 300] [--database NAME]

Enqueues ``--events`` events for the two-step no-op workflow, prints the statements one
event costs, then drains the outbox with the code a Celery task runs
(``dispatch.claim`` + ``dispatch.process_batch``) under pyinstrument, and prints the
profile. Also measures what one durable commit costs on this server.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import common

DB = "automate_bench_profile"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--database", default=DB, help="scratch database (dropped at the end)")
    args = parser.parse_args()
    url = common.scratch_database(args.database)
    common.migrate_and_setup(url)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    from automate import dispatch

    common.create_noop_workflow("Bench no-ops", "pull_request")
    common.enqueue_noop_events("p", "pull_request", range(args.events + 1))
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_commit_probe (id serial, v int)")
        started = time.perf_counter()
        for n in range(200):
            cursor.execute("INSERT INTO bench_commit_probe (v) VALUES (%s)", [n])
        commit_ms = (time.perf_counter() - started) / 200 * 1000
        started = time.perf_counter()
        for _ in range(200):
            cursor.execute("SELECT 1")
        select_ms = (time.perf_counter() - started) / 200 * 1000
    print(
        f"one autocommitted INSERT (a durable commit): {commit_ms:.2f} ms; "
        f"SELECT 1: {select_ms:.2f} ms"
    )

    items = dispatch.claim(1)
    with CaptureQueriesContext(connection) as captured:
        dispatch.process_batch(items)
    print(f"statements for one event: {len(captured.captured_queries)}")
    for query in captured.captured_queries:
        print(f"  {query['sql'][:110]}")

    profiler = Profiler(interval=0.0005)
    started = time.perf_counter()
    done = 0
    profiler.start()
    while items := dispatch.claim(100):
        dispatch.process_batch(items)
        done += len(items)
    profiler.stop()
    elapsed = time.perf_counter() - started
    print(f"{done} events in {elapsed:.1f} s: {elapsed / done * 1000:.1f} ms per event")
    common.print_profile(profiler)
    connection.close()
    common.drop_database(args.database)


if __name__ == "__main__":
    main()

"""The DBOS Transact baseline: a workflow of two no-op steps, on its own PostgreSQL
database (``BENCH_DBOS_DB``).

Run directly (``DBOS.launch()`` in the process that calls the workflow), or as a queue
worker: ``python -m benchmarks.dbos_app EXECUTOR_ID`` launches DBOS and runs what its
queues hand it until SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from dbos import DBOS, DBOSClient

NAME = "bench"
#: Every process and every enqueue names the same version: DBOS runs a queued workflow
#: only in a process of the version it was enqueued with.
VERSION = "bench"


@DBOS.step()
def first(event: int) -> None:
    return None


@DBOS.step()
def second(event: int) -> None:
    return None


@DBOS.workflow()
def two_noops(event: int) -> None:
    first(event)
    second(event)


def launch(executor_id: str) -> None:
    DBOS(
        config={
            "name": NAME,
            "system_database_url": os.environ["BENCH_DBOS_DB"],
            "application_version": VERSION,
            "executor_id": executor_id,
            "log_level": "WARNING",
        }
    )
    DBOS.launch()


def client() -> DBOSClient:
    return DBOSClient(system_database_url=os.environ["BENCH_DBOS_DB"], application_name=NAME)


def run_directly(share: range) -> None:
    """A producer that is its own worker: each event's workflow runs in the call."""
    for n in share:
        two_noops(n)


def enqueue(queue_name: str, share: range) -> None:
    jobs = client()
    options = {"workflow_name": two_noops.__qualname__, "queue_name": queue_name}
    try:
        for n in share:
            jobs.enqueue({**options, "app_version": VERSION}, n)  # type: ignore[typeddict-item]
    finally:
        jobs.destroy()


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    launch(sys.argv[1])
    stop.wait()
    DBOS.destroy()


if __name__ == "__main__":
    main()

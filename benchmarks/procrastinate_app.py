"""The procrastinate baseline: an async no-op task on the same PostgreSQL server (async
tasks are what ``procrastinate worker --concurrency N`` runs side by side in one
process)."""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_DB", ""))
)


@app.task(name="bench_noop")
async def noop(event: int) -> None:
    return None

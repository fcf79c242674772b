"""The procrastinate baseline: a no-op task on the same PostgreSQL server."""

from __future__ import annotations

import os

import procrastinate

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_PROCRASTINATE_DB", ""))
)


@app.task(name="bench_noop")
def noop(event: int) -> None:
    return None

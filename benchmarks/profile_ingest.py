"""Where one webhook request's time goes: pyinstrument over the webhook view, in process.

    python -m benchmarks.profile_ingest [--requests 2000] [--db NAME]

Posts ``--requests`` signed GitHub deliveries (as ``benchmarks.loadgen`` signs them)
through Django's test client to ``WebhookView`` and, for comparison, to the bare
baseline view, on a scratch PostgreSQL database; prints the statements one accepted
webhook costs, then for each view what does not depend on the machine's load (statements
per request over all the requests, Python function calls per request, garbage
collections by generation) and what does (CPU and wall time per request), and the
profile of ours.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import gc
import pstats
import time

from benchmarks import common
from benchmarks.loadgen import request_bytes

DB = "automate_bench_profile_ingest"


def _request(path: str, n: int, prefix: str) -> tuple[bytes, dict[str, str]]:
    raw = request_bytes(path, 80, b"demo-github-secret", n, prefix)
    head, body = raw.split(b"\r\n\r\n", 1)
    headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
    meta = {
        f"HTTP_{name.upper().replace('-', '_')}": value
        for name, value in headers.items()
        if name.startswith("X-")
    }
    return body, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--db", default=DB, help=f"scratch database name (default {DB})")
    args = parser.parse_args()
    url = common.scratch_database(args.db)
    common.migrate_and_setup(url)
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from pyinstrument import Profiler

    from benchmarks.bench_app.views import CREATE

    with connection.cursor() as cursor:
        cursor.execute(CREATE)
    client = Client(HTTP_HOST="127.0.0.1")  # the example project allows loopback hosts only

    def post(path: str, n: int, prefix: str) -> int:
        body, meta = _request(path, n, prefix)
        response = client.post(path, body, content_type="application/json", **meta)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{path}: {response.status_code} {response.content[:200]!r}")
        return response.status_code

    assert post("/webhooks/github/", 0, "warm") == 202
    assert post("/bare/github/", 0, "warm") == 202
    with CaptureQueriesContext(connection) as captured:
        assert post("/webhooks/github/", 1, "warm") == 202
    print(f"statements for one accepted webhook: {len(captured.captured_queries)}")
    for query in captured.captured_queries:
        print(f"  {query['sql'][:110]}")

    for name, path in [("baseline", "/bare/github/"), ("ours", "/webhooks/github/")]:
        statements: list[str] = []

        def count(execute, sql, params, many, context, statements=statements):
            statements.append(sql)
            return execute(sql, params, many, context)

        collections_by_generation: collections.Counter[int] = collections.Counter()

        def collected(phase: str, info: dict, seen=collections_by_generation) -> None:
            if phase == "stop":
                seen[info["generation"]] += 1

        gc.callbacks.append(collected)
        started, cpu = time.perf_counter(), time.process_time()
        with connection.execute_wrapper(count):
            for n in range(args.requests):
                post(path, n, f"time-{name}")
        cpu, elapsed = time.process_time() - cpu, time.perf_counter() - started
        gc.callbacks.remove(collected)
        gcs = collections_by_generation
        calls = cProfile.Profile()
        calls.enable()
        for n in range(min(args.requests, 500)):
            post(path, n, f"calls-{name}")
        calls.disable()
        stats = pstats.Stats(calls).stats  # type: ignore[attr-defined]
        per_request = sum(v[1] for v in stats.values()) / min(args.requests, 500)
        print(
            f"{name}: {len(statements) / args.requests:.3f} statements, {per_request:.0f} "
            f"Python calls, {cpu / args.requests * 1000:.2f} ms CPU and "
            f"{elapsed / args.requests * 1000:.2f} ms per request; garbage collections by "
            f"generation over {args.requests} requests: {dict(sorted(gcs.items()))}"
        )

    profiler = Profiler(interval=0.0002)
    profiler.start()
    for n in range(args.requests):
        post("/webhooks/github/", n, "profile")
    profiler.stop()
    common.print_profile(profiler)
    connection.close()
    common.drop_database(args.db)


if __name__ == "__main__":
    main()

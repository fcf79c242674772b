"""Ingest: signed GitHub webhooks into the example project under gunicorn on PostgreSQL.

    python -m benchmarks.ingest [--seconds 15] [--workers 3] [--loaders 2] [--concurrency 16]

Ours is ``WebhookView`` (verify, dedupe by delivery id, one outbox row, 202); the baseline
is a bare Django view in the same server doing the same HMAC check and one INSERT. Both
are loaded in turn by the same generator processes, and each run is preceded by a warm-up.
Goal: ours at 0.8 or more of the baseline's requests per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.request

from benchmarks import common

DB = "automate_bench_ingest"


def load(port: int, path: str, args) -> dict:
    """Run ``--loaders`` generator processes against ``path``; merge what they measured."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--path", path]
    cmd += ["--seconds", str(args.seconds), "--concurrency", str(args.concurrency)]
    procs = [
        subprocess.Popen(cmd, cwd=common.ROOT, stdout=subprocess.PIPE) for _ in range(args.loaders)
    ]
    latencies: list[float] = []
    status: dict[str, int] = {}
    elapsed = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=args.seconds + 60)
        stats = json.loads(out)
        latencies += stats["latencies"]
        elapsed = max(elapsed, stats["elapsed"])
        for key, value in stats["status"].items():
            status[key] = status.get(key, 0) + value
    ok = sum(v for k, v in status.items() if k in ("200", "202"))
    return {
        "rps": ok / elapsed,
        "p50": common.percentile(latencies, 0.5) * 1000,
        "p99": common.percentile(latencies, 0.99) * 1000,
        "requests": len(latencies),
        "status": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--loaders", type=int, default=2, help="load generator processes")
    parser.add_argument("--concurrency", type=int, default=16, help="connections per loader")
    args = parser.parse_args()

    url = common.scratch_database(DB)
    env = common.env_for(url)
    common.migrate_and_setup(url)
    from django.db import connection

    from benchmarks.bench_app.views import CREATE, TABLE

    with connection.cursor() as cursor:
        cursor.execute(CREATE)
    connection.close()

    port = common.free_port()
    server = common.start(
        [
            *[sys.executable, "-m", "gunicorn", "benchmarks.wsgi", "--workers", str(args.workers)],
            *["--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning"],
        ],
        env,
    )
    results = {}
    try:
        common.wait_for(lambda: _up(port), 30, "gunicorn to listen")
        targets = {"ours (WebhookView + outbox)": "/webhooks/github/", "baseline": "/bare/github/"}
        for path in targets.values():
            load(port, path, argparse.Namespace(**{**vars(args), "seconds": 2}))  # warm-up
        for name, path in targets.items():
            results[name] = load(port, path, args)
            time.sleep(1)
    finally:
        common.stop(server)

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        bare_rows = cursor.fetchone()[0]
    from automate_core.models import OutboxItem

    our_rows = OutboxItem.objects.count()
    connection.close()
    common.drop_database(DB)

    ours, base = results["ours (WebhookView + outbox)"], results["baseline"]
    rows = [
        [name, f"{r['rps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}", r["requests"], r["status"]]
        for name, r in results.items()
    ]
    ratio = ours["rps"] / base["rps"]
    body = common.table(
        ["endpoint", "requests/s", "p50 ms", "p99 ms", "requests", "status codes"], rows
    )
    notes = (
        f"Ours/baseline throughput: **{ratio:.2f}** (goal >= 0.8: "
        f"{'met' if ratio >= 0.8 else 'missed'}). Rows stored: {our_rows} outbox items, "
        f"{bare_rows} baseline rows (warm-up included). gunicorn {args.workers} sync workers, "
        f"{args.loaders} loader processes x {args.concurrency} connections, {args.seconds:g} s "
        "per endpoint, loopback; load generator and server share the machine's CPUs."
    )
    common.report("Ingest: signed webhooks under gunicorn on PostgreSQL", body, notes)


def _up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=1)
        return True
    except Exception as exc:
        return getattr(exc, "code", None) is not None


if __name__ == "__main__":
    main()

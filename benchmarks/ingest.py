"""Ingest: signed GitHub webhooks into the example project under gunicorn on PostgreSQL.

    python -m benchmarks.ingest [--seconds 10] [--rounds 5] [--workers 3] [--threads 2]
                                [--connections 32] [--generator auto|wrk|python]
                                [--db NAME] [--no-write]

Ours is ``WebhookView`` (connection lookup, signature check, dedupe by delivery id and by
signed body, header allow-list, trace id, one outbox row, 202 once committed); the
baseline is a bare Django view in the same server doing the same HMAC check and one
INSERT into a table whose delivery column is unique. Three gunicorn servers run side
by side on one database: one with traces and metrics off (``BENCH_OBSERVABILITY=off``: both
extras blocked), one with both on (``BENCH_OBSERVABILITY=on``, an SDK tracer provider and
``PROMETHEUS_MULTIPROC_DIR`` in a temporary directory), and one with traces and metrics off
and Django's ``CONN_HEALTH_CHECKS`` off (``BENCH_CONN_HEALTH_CHECKS=0``; the other two have
the example project's setting, on), which serves both views again: with health checks on,
the bare view's first statement waits for Django's ``SELECT 1`` check and ours' INSERT is
its own check (``automate.prepared``), so that pair shows the two without it. The same
generator loads, in turn, each view on each server, each after a warm-up and a
CHECKPOINT, for ``--rounds`` rounds; the rounds run the endpoints forwards and backwards
by turns (ABCDE EDCBA), so that each of ours is measured right before or right after the
bare view it is compared with, first in one round and second in the next. The machine's
speed drifts by a tenth or more within minutes on shared hosts, moving runs a minute
apart more than anything measured here: each round's ratio compares two runs seconds
apart, and the ratios the table leads with are the median of those (each endpoint's
median round is its row). Each run also reads the CPU it took (the gunicorn server, the
database's client backends and the generator): CPU per accepted webhook, its ratio and
its parts are given beside the rates, which on saturated CPUs they explain.
Goal: 0.9 or more with every guarantee on (connection lookup, verification, dedupe, header
allow-list, trace id); the row with traces and metrics on as well shows what those
optional extras add.

The generator is ``wrk`` (``apt install wrk``) with ``benchmarks/wrk/github_webhook.lua``
when it is on the PATH, else the Python ``benchmarks.loadgen`` processes (``--generator``
chooses; the report names the one used). wrk's Lua has no HMAC, and the view refuses
the same signed body twice (``automate.replays``), so this script signs
``--max-rate`` x ``--seconds`` distinct deliveries per target beforehand and the Lua
script sends them; a thread that runs out starts its list again, and the repeats show
as 200s. Every status code is counted, and the rows each run stored are compared with
its 202s: a run with errors, repeats or missing rows says so under the table.

``--no-write`` (or ``BENCH_NO_WRITE=1``) prints the table without appending it to
``docs/benchmarks.md``; ``--db`` names the scratch database (dropped at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from benchmarks import common
from benchmarks.loadgen import signed_delivery

DB = "automate_bench_ingest"
LUA = common.ROOT / "benchmarks" / "wrk" / "github_webhook.lua"
SECRET = b"demo-github-secret"
BARE, OURS = "/bare/github/", "/webhooks/github/"
BASELINE = "bare view (baseline)"
OFF, ON = "ours, traces and metrics off", "ours, traces and metrics on"
#: The rows of a third server with Django's CONN_HEALTH_CHECKS off (the others have the
#: example project's setting, on): like against like whatever the check costs.
UNCHECKED_BARE = "bare view, health checks off"
UNCHECKED_OURS = "ours, traces and metrics off, health checks off"
UNCHECKED = (UNCHECKED_BARE, UNCHECKED_OURS)


def load_python(port: int, path: str, args, seconds: float) -> dict:
    """Run ``--threads`` loadgen processes against ``path``; merge what they measured."""
    cmd = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--path", path]
    per_process = max(1, args.connections // args.threads)
    cmd += ["--seconds", str(seconds), "--concurrency", str(per_process)]
    procs = [
        subprocess.Popen(cmd, cwd=common.ROOT, stdout=subprocess.PIPE) for _ in range(args.threads)
    ]
    latencies: list[float] = []
    status: dict[str, int] = {}
    elapsed = 0.0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        stats = json.loads(out)
        latencies += stats["latencies"]
        elapsed = max(elapsed, stats["elapsed"])
        for key, value in stats["status"].items():
            status[key] = status.get(key, 0) + value
    errors = {k: v for k, v in status.items() if not k.isdigit()}
    return {
        "elapsed": elapsed,
        "p50": common.percentile(latencies, 0.5) * 1000,
        "p99": common.percentile(latencies, 0.99) * 1000,
        "requests": len(latencies),
        "status": {k: v for k, v in status.items() if k.isdigit()},
        "errors": errors,
    }


def write_requests(directory: Path, args, seconds: float) -> None:
    """Sign the deliveries one wrk run sends: ``<thread>.txt`` per wrk thread, one request
    a line (delivery id, signature, body; tab-separated), none sent before."""
    directory.mkdir(parents=True)
    per_thread = max(100, int(args.max_rate * seconds / args.threads))
    prefix = uuid.uuid4().hex[:12]
    for thread in range(1, args.threads + 1):
        with (directory / f"{thread}.txt").open("wb") as fh:
            for n in range(per_thread):
                delivery, signature, body = signed_delivery(SECRET, n, f"{prefix}-{thread}")
                fh.write(f"{delivery}\t{signature}\t".encode() + body + b"\n")


def load_wrk(port: int, path: str, args, seconds: float) -> dict:
    """One wrk run against ``path`` with deliveries signed for it; what its Lua reported."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-wrk-") as tmp:
        requests = Path(tmp) / "requests"
        write_requests(requests, args, seconds)
        cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections)]
        cmd += ["-d", f"{seconds:g}s", "--timeout", "10s", "-s", str(LUA)]
        cmd += [f"http://127.0.0.1:{port}{path}", "--", str(requests)]
        out = subprocess.run(
            cmd, cwd=common.ROOT, capture_output=True, text=True, timeout=seconds + 120
        )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]}{out.stderr}")
    stats = json.loads(line.removeprefix("WRK_JSON "))
    errors = {k: v for k, v in stats["errors"].items() if v and k != "status"}
    return {
        "elapsed": stats["duration_us"] / 1e6,
        "p50": stats["latency_us"]["50"] / 1000,
        "p99": stats["latency_us"]["99"] / 1000,
        "requests": stats["requests"],
        "status": stats["status"],
        "errors": errors,
    }


def _measure(load, port: int, path: str, server: subprocess.Popen, args) -> dict:
    """One measured run of ``path`` after a warm-up, from a clean checkpoint; with the rows
    it stored and the CPU it took (:func:`_cpu_seconds`)."""
    load(port, path, args, args.warmup)
    _checkpoint()
    time.sleep(0.5)
    before = stored_rows()[path]
    cpu = _cpu_seconds(server)
    result = load(port, path, args, args.seconds)
    result["cpu"] = {part: used - cpu[part] for part, used in _cpu_seconds(server).items()}
    result["stored"] = stored_rows()[path] - before
    return result


def _cpu_seconds(server: subprocess.Popen) -> dict[str, float]:
    """CPU seconds used so far, by part: the gunicorn server (``server``: master and
    workers), every client backend of the benchmark's database (``backends``:
    the other servers' sit idle meanwhile) and this process's finished children
    (``generator``: each wrk run, or the Python generator's processes). Read beside the
    rates: time the host takes away from a process (steal) is not counted as its CPU,
    although a host that runs slower makes every request cost more of it."""
    return {
        "server": sum(common.process_cpu(pid) for pid in common.process_tree(server.pid)),
        "backends": sum(common.process_cpu(pid) for pid in common.database_backends()),
        "generator": common.children_cpu(),
    }


def _median_run(runs: list[dict]) -> dict:
    """The run with the median rate (the lower middle one of an even count)."""
    return sorted(runs, key=_rps)[(len(runs) - 1) // 2]


def _checkpoint() -> None:
    """Flush the previous run's dirty pages now, not during the next measured run."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def serve(env: dict[str, str], workers: int) -> tuple[int, subprocess.Popen]:
    port = common.free_port()
    server = common.start(
        [
            *[sys.executable, "-m", "gunicorn", "benchmarks.wsgi", "--workers", str(workers)],
            *["--bind", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning"],
        ],
        env,
    )
    return port, server


def stored_rows() -> dict[str, int]:
    from django.db import connection

    from benchmarks.bench_app.views import TABLE

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {TABLE}")
        bare = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM automate_core_outboxitem")
        ours = cursor.fetchone()[0]
    connection.close()
    return {BARE: bare, OURS: ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="per measured run")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per run")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads / loadgen processes")
    parser.add_argument("--connections", type=int, default=32, help="open connections in all")
    parser.add_argument(
        "--generator", choices=["auto", "wrk", "python"], default="auto", help="auto: wrk if found"
    )
    parser.add_argument(
        "--max-rate", type=int, default=5000, help="requests/s the signed lists allow (wrk)"
    )
    parser.add_argument(
        "--rounds", type=int, default=6, help="runs per endpoint (even: each order as often)"
    )
    parser.add_argument("--db", default=DB, help=f"scratch database (default {DB})")
    parser.add_argument("--no-write", action="store_true", help="do not append to the docs")
    args = parser.parse_args()
    if args.no_write:
        os.environ["BENCH_NO_WRITE"] = "1"

    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "python"
    elif generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not on the PATH (apt install wrk)")
    load = load_wrk if generator == "wrk" else load_python
    print(f"load generator: {generator}", flush=True)

    url = common.scratch_database(args.db)
    common.migrate_and_setup(url)
    from django.db import connection

    from benchmarks.bench_app.views import CREATE

    with connection.cursor() as cursor:
        cursor.execute(CREATE)
    connection.close()

    metrics_dir = tempfile.mkdtemp(prefix="bench-ingest-prometheus-")
    off_port, off = serve(common.env_for(url, BENCH_OBSERVABILITY="off"), args.workers)
    on_env = common.env_for(url, BENCH_OBSERVABILITY="on", PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    on_port, on = serve(on_env, args.workers)
    unchecked_env = common.env_for(url, BENCH_OBSERVABILITY="off", BENCH_CONN_HEALTH_CHECKS="0")
    unchecked_port, unchecked = serve(unchecked_env, args.workers)
    # In this order, forwards and backwards: each of ours right next to the bare view it
    # is compared with (with traces and metrics on, on its other side).
    targets = {
        ON: (on_port, OURS, on),
        BASELINE: (off_port, BARE, off),
        OFF: (off_port, OURS, off),
        UNCHECKED_BARE: (unchecked_port, BARE, unchecked),
        UNCHECKED_OURS: (unchecked_port, OURS, unchecked),
    }
    rounds: dict[str, list[dict]] = {name: [] for name in targets}
    try:
        common.wait_for(
            lambda: _up(off_port) and _up(on_port) and _up(unchecked_port),
            60,
            "gunicorn to listen",
        )
        for n in range(args.rounds):
            # Forwards, then backwards: each pair is measured back to back, in both orders
            # (the second of two inherits the first's autovacuum), and a drift that is
            # steady over two rounds moves both of a pair alike.
            for name in list(targets)[:: 1 if n % 2 == 0 else -1]:
                port, path, server = targets[name]
                rounds[name].append(_measure(load, port, path, server, args))
                print(f"round {n + 1}, {name}: {_rps(rounds[name][-1]):.0f} requests/s", flush=True)
    finally:
        common.stop(off)
        common.stop(on)
        common.stop(unchecked)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    common.drop_database(args.db)
    results = {name: _median_run(runs) for name, runs in rounds.items()}

    def ratios(ours: str, bare: str = BASELINE) -> list[float]:
        """Each round's ratio of two endpoints measured back to back."""
        return [_rps(o) / _rps(b) for o, b in zip(rounds[ours], rounds[bare], strict=True)]

    def ratio(ours: str, bare: str = BASELINE) -> float:
        return statistics.median(ratios(ours, bare))

    def by_round(ours: str, bare: str = BASELINE) -> str:
        """Each round's ratio, and the ratio of the two median runs: how far the machine's
        drift between runs a minute apart would move it."""
        listed = " / ".join(f"{value:.2f}" for value in ratios(ours, bare))
        medians = _rps(results[ours]) / _rps(results[bare])
        return f"by round {listed}; of the median runs {medians:.2f}"

    def cpu_ratio(ours: str, bare: str = BASELINE) -> str:
        """The bare view's CPU per accepted webhook against ours', by round (comparable with
        the rates' ratio: on saturated CPUs, rates go as the inverse of CPU per request)."""
        values = [_cpu_us(b) / _cpu_us(o) for o, b in zip(rounds[ours], rounds[bare], strict=True)]
        return f"{statistics.median(values):.2f}x"

    def split(ours: str, bare: str = BASELINE) -> str:
        """The parts of CPU per webhook, ours against the bare view (medians of rounds)."""
        parts = []
        for part, label in (
            ("server", "gunicorn"),
            ("backends", "backends"),
            ("generator", generator),
        ):
            mine = statistics.median(_cpu_us(run, part) for run in rounds[ours])
            theirs = statistics.median(_cpu_us(run, part) for run in rounds[bare])
            parts.append(f"{label} {mine:.0f} / {theirs:.0f} µs")
        return ", ".join(parts)

    off_ratio = ratio(OFF)
    on_ratio = ratio(ON)
    unchecked_ratio = ratio(UNCHECKED_OURS, UNCHECKED_BARE)

    rows = [
        [
            name,
            f"{ratio(name):.2f}x",
            f"{_rps(r):.0f}",
            f"{statistics.median(_cpu_us(run) for run in rounds[name]):.0f}",
            f"{r['p50']:.1f}",
            f"{r['p99']:.1f}",
            r["requests"],
            r["stored"],
            ", ".join(f"{k}: {v}" for k, v in sorted(r["status"].items())) or "-",
            " / ".join(f"{_rps(run):.0f}" for run in rounds[name]),
        ]
        for name, r in ((name, results[name]) for name in (BASELINE, OFF, ON, *UNCHECKED))
    ]
    # The goal's "everything on" is what every webhook gets (connection lookup,
    # verification, dedupe, header allow-list, trace id); traces and metrics are optional
    # extras the bare view has no counterpart of, so their row shows what they add.
    lead = (
        "Ours / bare view, the median of the rounds' ratios of runs measured back to back: "
        f"**{off_ratio:.2f}x** with every guarantee on and the optional traces and metrics "
        f"off (goal >= 0.9: {'met' if off_ratio >= 0.9 else 'missed'}; {by_round(OFF)}), "
        f"**{on_ratio:.2f}x** with traces and metrics on as well ({by_round(ON)}); "
        f"**{unchecked_ratio:.2f}x** with `CONN_HEALTH_CHECKS` off on both sides "
        f"({by_round(UNCHECKED_OURS, UNCHECKED_BARE)}; with it on, as in the example "
        "project, the bare view's first statement is preceded by Django's `SELECT 1` "
        "check, and ours' INSERT is its own check). The same in CPU per accepted webhook "
        f"(the bare view's over ours', median of the rounds): {cpu_ratio(OFF)} with every "
        f"guarantee on, {cpu_ratio(ON)} with traces and metrics on, "
        f"{cpu_ratio(UNCHECKED_OURS, UNCHECKED_BARE)} with health checks off on both sides "
        f"(where it goes, ours / the bare view: {split(OFF)}; with health checks off, "
        f"{split(UNCHECKED_OURS, UNCHECKED_BARE)})."
    )
    body = (
        lead
        + "\n\n"
        + common.table(
            [
                "endpoint",
                "x bare (median of rounds)",
                "accepted/s",
                "CPU µs per webhook",
                "p50 ms",
                "p99 ms",
                "requests",
                "rows stored",
                "status",
                "accepted/s by round",
            ],
            rows,
        )
    )
    problems = _problems(rounds, args.connections)
    notes = (
        f"Load generator: {generator}"
        + (f" ({LUA.relative_to(common.ROOT)})" if generator == "wrk" else " (benchmarks.loadgen)")
        + f", {args.threads} {'threads' if generator == 'wrk' else 'processes'} x "
        f"{args.connections} connections in all, "
        f"{args.seconds:g} s per endpoint after {args.warmup:g} s of warm-up and a "
        f"CHECKPOINT, {args.rounds} rounds running ours with traces and metrics on, the bare "
        "view, ours, then the two with health checks off, and the same backwards in the "
        "next round; gunicorn "
        f"{args.workers} sync workers per server, loopback; generator, servers and PostgreSQL "
        "share the machine's CPUs. x bare: the median of the rounds' ratios to the bare "
        "view. CPU µs per webhook: the median of the rounds' CPU time of the gunicorn server "
        "(master and workers), the database's client backends and the generator during "
        "the run (from /proc and getrusage) over its 202s. The other columns: the "
        "endpoint's median round; accepted/s counts 202 answers."
    )
    if problems:
        notes += "\n\n**Not a clean run:** " + "; ".join(problems) + "."
        print("WARNING: " + "; ".join(problems), file=sys.stderr)
    common.report("Ingest: signed webhooks under gunicorn on PostgreSQL", body, notes)


def _cpu_us(result: dict, part: str | None = None) -> float:
    """CPU microseconds per accepted webhook: of the server, its backends and the generator
    together, or of one ``part`` of them."""
    used = result["cpu"][part] if part else sum(result["cpu"].values())
    return used * 1e6 / max(1, result["status"].get("202", 0))


def _rps(result: dict) -> float:
    return result["status"].get("202", 0) / result["elapsed"] if result["elapsed"] else 0.0


def _problems(rounds: dict[str, list[dict]], connections: int) -> list[str]:
    """Everything that makes a run's rate not the rate of accepted, stored webhooks."""
    problems = []
    for name, r in ((name, run) for name, runs in rounds.items() for run in runs):
        other = {k: v for k, v in r["status"].items() if k != "202"}
        if other:
            problems.append(f"{name}: answers other than 202 {other}")
        if r["errors"]:
            problems.append(f"{name}: transport errors {r['errors']}")
        accepted = r["status"].get("202", 0)
        # Requests still in flight when the generator stops are stored but not counted.
        if not accepted <= r["stored"] <= accepted + connections:
            problems.append(f"{name}: {r['stored']} rows stored for {accepted} 202s")
    return problems


def _up(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=1)
        return True
    except Exception as exc:
        return getattr(exc, "code", None) is not None


if __name__ == "__main__":
    main()

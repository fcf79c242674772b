"""Instructions per webhook request, counted by callgrind rather than timed.

    python -m benchmarks.callgrind_ingest [--requests 1000] [--db NAME] [--views bare,ours]
                                          [--no-backend] [--observability on|off]

Runs, under ``valgrind --tool=callgrind``, a process that sends ``--requests`` signed
GitHub deliveries through Django's ``WSGIHandler`` (environ dicts, no server) to the bare
view and to ``WebhookView``, and one that sends half as many; the difference of their
instruction counts, divided by the requests it covers, is one request's cost without the
process's start-up. Both processes build the same requests first, so signing them costs
the same in each. The PostgreSQL backend's CPU per request (``/proc/<pid>/stat`` of
``pg_backend_pid()``, clock ticks) is measured outside valgrind, over ``--requests`` x 5.
Counts hardly move from run to run (a shared machine's load does not enter them), so
one change is judged by the counts before and after it.

``--observability on`` runs the measured processes as ``BENCH_OBSERVABILITY=on`` (an SDK
tracer provider with a batch processor that drops the spans, prometheus-client writing to
a ``PROMETHEUS_MULTIPROC_DIR`` of their own), ``off`` with both extras blocked; without it
they run with whatever the virtualenv has.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from benchmarks import common
from benchmarks.loadgen import signed_delivery

DB = "automate_bench_callgrind_ingest"
SECRET = b"demo-github-secret"
PATHS = {"bare": "/bare/github/", "ours": "/webhooks/github/"}


def _environs(path: str, count: int, prefix: str) -> list[dict]:
    environs = []
    for n in range(count):
        delivery, signature, body = signed_delivery(SECRET, n, prefix)
        environs.append(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": path,
                "SCRIPT_NAME": "",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "80",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "HTTP_HOST": "127.0.0.1",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_GITHUB_EVENT": "pull_request",
                "HTTP_X_GITHUB_DELIVERY": delivery,
                "HTTP_X_HUB_SIGNATURE_256": signature,
                "wsgi.input": body,  # replaced by a stream when sent
                "wsgi.url_scheme": "http",
                "wsgi.errors": sys.stderr,
                "wsgi.multithread": False,
                "wsgi.multiprocess": True,
                "wsgi.run_once": False,
            }
        )
    return environs


def _send(app, environ: dict) -> str:
    statuses: list[str] = []
    environ = {**environ, "wsgi.input": io.BytesIO(environ["wsgi.input"])}
    response = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    for _ in response:
        pass
    response.close()
    return statuses[0]


def _timeless() -> None:
    """Nothing that runs every so many seconds: under callgrind a request takes a hundred
    times longer, and the count must not depend on how long the run took. A server at
    full load does these once per thousands of requests: the database connection
    (CONN_MAX_AGE), the connection lookup (CONNECTION_CACHE_SECONDS) and the receipts'
    prune are kept for the whole run."""
    from django.conf import settings
    from django.db import connections

    from automate import replays

    settings.AUTOMATE = {**settings.AUTOMATE, "CONNECTION_CACHE_SECONDS": 10**9}
    connections["default"].settings_dict["CONN_MAX_AGE"] = None
    replays.PRUNE_EVERY = 10.0**9


def child(url: str, view: str, sent: int, built: int, prefix: str) -> None:
    """The measured process: set up, warm up, then send ``sent`` of ``built`` requests."""
    common.setup_django(url)
    _timeless()
    from django.core.handlers.wsgi import WSGIHandler

    app = WSGIHandler()
    path = PATHS[view]
    for environ in _environs(path, 20, f"{prefix}-warm"):
        assert _send(app, environ)[:3] in ("200", "202"), view
    environs = _environs(path, built, prefix)
    for environ in environs[:sent]:
        status = _send(app, environ)
        if status[:3] != "202":
            raise SystemExit(f"{view}: {status}")


def backend_seconds(url: str, view: str, requests: int, prefix: str) -> float:
    """PostgreSQL backend CPU seconds per request, over ``requests``."""
    common.setup_django(url)
    from django.core.handlers.wsgi import WSGIHandler

    app = WSGIHandler()
    path = PATHS[view]
    for environ in _environs(path, 50, f"{prefix}-warm"):
        _send(app, environ)
    pid = common.backend_pid()
    environs = _environs(path, requests, prefix)
    before = common.process_cpu(pid)
    for environ in environs:
        _send(app, environ)
    return (common.process_cpu(pid) - before) / requests


def _instructions(args, view: str, sent: int, prefix: str) -> int:
    child = ["benchmarks.callgrind_ingest", "--child", view, "--db-url", args.url]
    child += ["--sent", str(sent), "--requests", str(args.requests), "--prefix", prefix]
    return common.callgrind_instructions(child, observability=args.observability)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--db", default=DB)
    parser.add_argument("--views", default="bare,ours")
    parser.add_argument("--no-backend", action="store_true")
    parser.add_argument("--observability", choices=("on", "off"))
    parser.add_argument("--child")
    parser.add_argument("--db-url")
    parser.add_argument("--sent", type=int)
    parser.add_argument("--prefix")
    args = parser.parse_args()
    if args.child:
        child(args.db_url, args.child, args.sent, args.requests, args.prefix)
        return
    args.url = common.scratch_database(args.db)
    common.migrate_and_setup(args.url)
    from django.db import connection

    from benchmarks.bench_app.views import CREATE

    with connection.cursor() as cursor:
        cursor.execute(CREATE)
    connection.close()
    # Compiled before the two runs start: otherwise whichever of them imports a module
    # first compiles it (and writes its .pyc), and the other does not.
    compileall = [sys.executable, "-m", "compileall", "-q", "src", "benchmarks", "example"]
    subprocess.run(compileall, cwd=common.ROOT, check=True, capture_output=True)
    results = {}
    try:
        for n, view in enumerate(args.views.split(",")):
            with ThreadPoolExecutor(2) as pool:  # the two runs at once: counts, not time
                full_run = pool.submit(_instructions, args, view, args.requests, f"f{n}")
                half_run = pool.submit(_instructions, args, view, args.requests // 2, f"h{n}")
                full, half = full_run.result(), half_run.result()
            per_request = (full - half) / (args.requests - args.requests // 2)
            results[view] = {"instructions_per_request": round(per_request)}
            if not args.no_backend:
                cmd = [sys.executable, "-c", _BACKEND, args.url, view, str(args.requests * 5)]
                run = subprocess.run(cmd, cwd=common.ROOT, capture_output=True, text=True)
                if run.returncode != 0:
                    raise RuntimeError(run.stderr[-3000:])
                seconds = float(run.stdout.strip().splitlines()[-1])
                results[view]["backend_us_per_request"] = round(seconds * 1e6, 1)
            print(view, json.dumps(results[view]), flush=True)
    finally:
        common.drop_database(args.db)


_BACKEND = (
    "import sys; from benchmarks.callgrind_ingest import backend_seconds; "
    "print(backend_seconds(sys.argv[1], sys.argv[2], int(sys.argv[3]), 'b'))"
)


if __name__ == "__main__":
    main()

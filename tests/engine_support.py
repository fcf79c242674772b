"""What the end-to-end and crash tests share: a counting HTTP target, worker processes
(the embedded ``automate_worker``, or a real ``celery worker`` fed by
``automate_worker --dispatch-only``) and the loop that ``kill -9``s a worker mid-work."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


class CountingServer:
    """An HTTP server on 127.0.0.1 counting ``POST /record`` bodies by their ``event``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.counts: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.delay = delay
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.counts[str(body.get("event"))] += 1
                    server.bodies.append(body)
                    count = server.counts[str(body.get("event"))]
                if server.delay:
                    time.sleep(server.delay)
                data = json.dumps({"count": count}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> CountingServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for a worker process that reaches this test's database."""
    db = connection.settings_dict
    database = {k: db[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    database["NAME"] = str(database["NAME"])
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.worker_settings",
        AUTOMATE_TEST_DB="sqlite",  # tests.settings must not start another server
        AUTOMATE_WORKER_DATABASE=json.dumps(database),
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), str(ROOT / "example")]),
        PYTHONWARNINGS="ignore",
    )
    env.update(extra)
    return env


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    # stderr goes to a file, not a pipe: nothing reads a pipe while the process runs, and a
    # worker logging a line per run fills the pipe's 64 KiB after a few hundred runs and
    # then blocks in its next write, holding the logging lock (make soak's 1,000-event
    # restart test stalled exactly so).
    log = tempfile.TemporaryFile()  # noqa: SIM115 (stop() reads and closes it)
    process = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    _stderr_logs[process.pid] = log
    return process


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> str:
    """Stop a worker process; return what it wrote on stderr."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log = _stderr_logs.pop(process.pid, None)
    if log is None:  # stopped before
        return ""
    with log:
        log.seek(0)
        return log.read().decode(errors="replace")


#: Each started process's stderr file, by pid, until stop() reads and closes it.
_stderr_logs: dict[int, Any] = {}


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


#: ``manage.py automate_worker`` as the crash tests run it (plus ``--threads``).
EMBEDDED_WORKER = ["-m", "django", "automate_worker", "--batch", "5", "--poll", "0.1"]
#: ``automate_worker --dispatch-only``: claims outbox items and sends them to Celery.
DISPATCHER = [*EMBEDDED_WORKER, "--dispatch-only"]


def celery_worker_args(queue: str) -> list[str]:
    """A real ``celery worker`` (two threads) consuming ``queue`` through tests.celery_app."""
    return [
        *("-m", "celery", "-A", "tests.celery_app", "worker", "--pool", "threads"),
        *("--concurrency", "2", "--queues", queue, "--loglevel", "ERROR"),
        *("--without-gossip", "--without-mingle", "--without-heartbeat"),
    ]


def start_embedded_worker(**extra: str) -> subprocess.Popen:
    """An embedded worker (two threads) whose leases run out 2 s after a kill."""
    env = worker_env(AUTOMATE_WORKER_LEASE_SECONDS="2", **extra)
    return start([*EMBEDDED_WORKER, "--threads", "2"], env)


def crash_repeatedly(
    start_worker: Callable[[], subprocess.Popen],
    *,
    kills: int,
    progress: Callable[[], int],
    finished: Callable[[], bool],
    what: str,
    within: float = 120,
    seed: int = 7,
    pause: float = 0.3,
    state: Callable[[], str] = lambda: "",
    out_of_work: Callable[[], bool] = lambda: False,
) -> str:
    """Start a worker, SIGKILL it mid-work ``kills`` times, then let a last one finish.

    Each kill comes when ``progress()`` has grown since the worker started, after a random
    pause of up to ``pause`` s (``seed`` makes the pauses repeatable); the kills stop
    early once ``out_of_work()`` says nothing is left to interrupt (a worker fast enough
    to finish the work before the last kill has nothing left to progress on). The last
    worker has ``within`` s until ``finished()``; a timeout reports ``state()`` and the
    worker's stderr. Returns what the last worker wrote on stderr.
    """
    chance = random.Random(seed)
    worker = start_worker()
    try:
        for _ in range(kills):
            seen = progress()
            try:
                wait_for(
                    lambda s=seen: progress() > s or out_of_work(), 60, "the worker to progress"
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}; worker stderr: {stop(worker)[-3000:]}") from None
            if out_of_work():
                break
            time.sleep(chance.uniform(0, pause))
            stop(worker, signal.SIGKILL)
            worker = start_worker()
        try:
            wait_for(finished, within, what)
        except AssertionError as exc:
            message = f"{exc}; {state()}; worker stderr: {stop(worker)[-3000:]}"
            raise AssertionError(message) from None
    finally:
        errors = stop(worker)
    return errors


def crash_celery_repeatedly(redis_url: str, name: str, extra: str = "", **crash: Any) -> str:
    """:func:`crash_repeatedly` for a real ``celery worker`` fed through Redis by an
    ``automate_worker --dispatch-only`` that runs (and is never killed) meanwhile.

    ``name`` names the test's own queue; ``extra`` is ``AUTOMATE_WORKER_EXTRA`` (JSON
    settings for both processes). Returns both processes' stderr.
    """
    queue = f"automate-{name}-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        AUTOMATE_WORKER_BROKER_URL=redis_url,
        AUTOMATE_WORKER_QUEUE=queue,
        AUTOMATE_WORKER_LEASE_SECONDS="4",
        AUTOMATE_WORKER_VISIBILITY_TIMEOUT="5",
        AUTOMATE_WORKER_MAX_IN_FLIGHT="10",
        **({"AUTOMATE_WORKER_EXTRA": extra} if extra else {}),
    )
    dispatcher = start(DISPATCHER, env)
    errors = ""
    try:
        errors = crash_repeatedly(lambda: start(celery_worker_args(queue), env), **crash)
    finally:
        errors += stop(dispatcher)
    return errors

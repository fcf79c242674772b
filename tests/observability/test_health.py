"""/health/: 200 with each check's details, or 503 naming what is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from automate import health, heartbeat
from automate.models import WorkerHeartbeat
from automate.worker import EmbeddedWorker
from automate_core.models import OutboxItem

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.observability.urls")]


@pytest.fixture(autouse=True)
def fresh(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "EXECUTION": "embedded"}
    heartbeat.reset_heartbeat()
    yield
    heartbeat.reset_heartbeat()


def test_health__a_polling_worker_makes_it_healthy(client):
    EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)  # its claim writes the beat
    assert WorkerHeartbeat.objects.get().worker == heartbeat.process_name()
    response = client.get("/health/")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    assert set(data["checks"]) == {"database", "migrations", "broker", "worker", "outbox"}
    assert data["checks"]["broker"] == {"ok": True, "mode": "embedded"}
    assert data["checks"]["worker"]["last_seen_seconds"] < 60


def test_health__no_worker_seen_is_503(client):
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["problems"] == ["worker: no worker has polled the outbox yet"]


def test_health__a_stale_heartbeat_is_503(client):
    WorkerHeartbeat.objects.create(worker="w", seen_at=timezone.now() - timedelta(minutes=5))
    response = client.get("/health/")
    assert response.status_code == 503
    [problem] = response.json()["problems"]
    assert problem.startswith("worker: no worker polled the outbox in the last 60 s")


def test_health__the_worker_check_can_be_turned_off(client, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "HEALTH_WORKER_MAX_AGE_SECONDS": 0}
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["worker"] == {"ok": True, "checked": False}


def test_health__heartbeats_are_throttled():
    assert heartbeat.beat() is True
    assert heartbeat.beat() is False  # within WORKER_HEARTBEAT_SECONDS: no write


def test_health__an_old_due_outbox_item_is_503(client):
    WorkerHeartbeat.objects.create(worker="w", seen_at=timezone.now())
    OutboxItem.objects.create(
        connector_key="a", trace_id="t", available_at=timezone.now() - timedelta(minutes=10)
    )
    response = client.get("/health/")
    assert response.status_code == 503
    [problem] = response.json()["problems"]
    assert problem.startswith("outbox: the oldest due outbox item has waited 6")
    assert "(limit 300 s)" in problem


def test_health__a_future_retry_is_not_lag(client):
    WorkerHeartbeat.objects.create(worker="w", seen_at=timezone.now())
    OutboxItem.objects.create(
        connector_key="a", trace_id="t", available_at=timezone.now() + timedelta(minutes=10)
    )
    assert client.get("/health/").status_code == 200


def test_health__an_unapplied_migration_is_503(client, monkeypatch):
    WorkerHeartbeat.objects.create(worker="w", seen_at=timezone.now())
    monkeypatch.setattr(health, "_migrated", False)
    [latest] = MigrationLoader(connection).graph.leaf_nodes("automate")
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'automate' AND name = %s", [latest[1]]
        )
    try:
        response = client.get("/health/")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, %s)",
                ["automate", latest[1], timezone.now()],
            )
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["migrations"]["pending"] == [f"automate.{latest[1]}"]
    assert response.json()["problems"] == ["migrations: 1 migration(s) not applied"]


def test_health__an_unreachable_broker_is_503_in_celery_mode(client, celery_broker):
    WorkerHeartbeat.objects.create(worker="w", seen_at=timezone.now())
    celery_broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response = client.get("/health/")
    assert response.status_code == 503
    [problem] = response.json()["problems"]
    assert problem.startswith("broker: the broker is unreachable")


@pytest.mark.redis
def test_health__a_reachable_broker_is_ok_in_celery_mode(client, celery_broker, redis_url):
    WorkerHeartbeat.objects.create(worker="w", seen_at=timezone.now())
    celery_broker(redis_url)
    response = client.get("/health/")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["broker"] == {"ok": True, "mode": "celery"}


def test_health__an_unreachable_database_is_503_and_skips_the_table_checks(monkeypatch):
    def down():
        raise OSError("connection refused")

    monkeypatch.setattr(health, "CHECKS", [("database", down), *health.CHECKS[1:]])
    healthy, checks = health.check_health()
    assert not healthy
    assert checks["database"] == {
        "ok": False,
        "problem": "the database is unreachable (OSError)",
    }
    for name in ("migrations", "worker", "outbox"):
        assert checks[name]["problem"] == "skipped: the database is unreachable"

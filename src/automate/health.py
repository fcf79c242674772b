"""``/health/``: is this deployment able to take events and run them? And the heartbeat.

Mount it where a load balancer or Kubernetes readiness probe can reach it::

    from automate.health import HealthView
    path("health/", HealthView.as_view())

It answers 200 with each check's details, or 503 naming what is wrong:

* ``database``: a ``SELECT 1`` answers;
* ``migrations``: no migration is left to apply (remembered once true);
* ``broker``: in Celery mode, the broker accepts a connection;
* ``worker``: a worker polled the outbox in the last
  ``AUTOMATE["HEALTH_WORKER_MAX_AGE_SECONDS"]`` (0 turns this check off): the embedded
  worker, the Celery-mode dispatcher and Celery tasks write a :class:`WorkerHeartbeat`
  row when they claim, at most every ``AUTOMATE["WORKER_HEARTBEAT_SECONDS"]``;
* ``outbox``: the oldest due item has waited less than
  ``AUTOMATE["HEALTH_OUTBOX_MAX_LAG_SECONDS"]``.

The details are ages, counts and exception type names: nothing secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views import View

from automate.conf import settings as app_settings
from automate.dispatch import execution_mode
from automate.heartbeat import beat
from automate.models import WorkerHeartbeat
from automate_core.outbox.models import DUE_STATUSES, OutboxItem

__all__ = ["HealthView", "beat", "check_health"]  # beat: automate.heartbeat's


_migrated = False

Check = dict[str, Any]


def check_database() -> Check:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def check_migrations() -> Check:
    global _migrated
    if not _migrated:
        connection = connections[DEFAULT_DB_ALIAS]
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            return {
                "ok": False,
                "problem": f"{len(plan)} migration(s) not applied",
                "pending": [f"{m.app_label}.{m.name}" for m, _ in plan[:10]],
            }
        _migrated = True
    return {"ok": True}


def check_broker() -> Check:
    if execution_mode() != "celery":
        return {"ok": True, "mode": "embedded"}
    from celery import current_app

    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    except Exception as exc:
        return {"ok": False, "problem": f"the broker is unreachable ({type(exc).__name__})"}
    return {"ok": True, "mode": "celery"}


def check_worker() -> Check:
    max_age = app_settings.HEALTH_WORKER_MAX_AGE_SECONDS
    if not max_age:
        return {"ok": True, "checked": False}
    newest = WorkerHeartbeat.objects.order_by("-seen_at").values_list("seen_at", flat=True)
    seen = newest.first()
    if seen is None:
        return {"ok": False, "problem": "no worker has polled the outbox yet"}
    age = (timezone.now() - seen).total_seconds()
    if age > max_age:
        return {
            "ok": False,
            "problem": f"no worker polled the outbox in the last {max_age:g} s",
            "last_seen_seconds": round(age, 1),
        }
    return {"ok": True, "last_seen_seconds": round(age, 1)}


def check_outbox() -> Check:
    """The oldest due item's wait, through the partial index of due rows."""
    now = timezone.now()
    due = OutboxItem.objects.filter(status__in=DUE_STATUSES, available_at__lte=now)
    oldest = due.order_by("available_at", "id").values_list("available_at", flat=True).first()
    lag = (now - oldest).total_seconds() if oldest is not None else 0.0
    limit = app_settings.HEALTH_OUTBOX_MAX_LAG_SECONDS
    if lag > limit:
        return {
            "ok": False,
            "problem": f"the oldest due outbox item has waited {lag:.0f} s (limit {limit:g} s)",
            "oldest_due_seconds": round(lag, 1),
        }
    return {"ok": True, "oldest_due_seconds": round(lag, 1)}


CHECKS: list[tuple[str, Callable[[], Check]]] = [
    ("database", check_database),
    ("migrations", check_migrations),
    ("broker", check_broker),
    ("worker", check_worker),
    ("outbox", check_outbox),
]
#: The checks that read tables: skipped when the database is down.
_NEEDS_DATABASE = {"migrations", "worker", "outbox"}


def check_health() -> tuple[bool, dict[str, Check]]:
    """Run every check; ``(healthy, details by check name)``."""
    results: dict[str, Check] = {}
    for name, check in CHECKS:
        if name in _NEEDS_DATABASE and not results["database"]["ok"]:
            results[name] = {"ok": False, "problem": "skipped: the database is unreachable"}
            continue
        try:
            results[name] = check()
        except Exception as exc:
            problem = f"{name} check failed ({type(exc).__name__})"
            results[name] = {"ok": False, "problem": problem}
            if name == "database":
                results[name]["problem"] = f"the database is unreachable ({type(exc).__name__})"
    return all(r["ok"] for r in results.values()), results


class HealthView(View):
    """200 ``{"status": "ok", "checks": {...}}`` or 503 ``{"status": "unhealthy",
    "problems": [...], "checks": {...}}``."""

    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest) -> JsonResponse:
        healthy, checks = check_health()
        if healthy:
            return JsonResponse({"status": "ok", "checks": checks})
        problems = [f"{name}: {c['problem']}" for name, c in checks.items() if not c["ok"]]
        body = {"status": "unhealthy", "problems": problems, "checks": checks}
        return JsonResponse(body, status=503)

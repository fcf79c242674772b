"""The bare Celery baseline: one task per event, no outbox; each records that it ran.

Two tasks, one per documented shape: ``bare`` keeps Celery's defaults (the message is
acknowledged when the worker takes it, before the task runs), ``bare_durable`` is
acknowledged after it ran (``acks_late``), so a worker that dies mid-task loses nothing.
"""

from __future__ import annotations

from celery import shared_task
from django.db import connection

TABLE = "bench_bare_done"
CREATE = f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, event int)"


def _record(event: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (event) VALUES (%s)", [event])


@shared_task(name="bench.bare", ignore_result=True)
def bare(event: int) -> None:
    _record(event)


@shared_task(name="bench.bare_durable", acks_late=True, ignore_result=True)
def bare_durable(event: int) -> None:
    _record(event)

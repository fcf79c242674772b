"""The bare Celery baseline: one task per event, no outbox; each records that it ran."""

from __future__ import annotations

from celery import shared_task
from django.db import connection

TABLE = "bench_bare_done"
CREATE = f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, event int)"


@shared_task(name="bench.bare", acks_late=True, ignore_result=True)
def bare(event: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (event) VALUES (%s)", [event])

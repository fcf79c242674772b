"""The trace crosses the broker: a real ``celery worker`` process continues it.

The webhook is accepted here (spans in the in-memory exporter); the Celery worker, with
an SDK provider of its own writing spans to a file, runs the workflow. Its task span is
a child of the webhook's span (``traceparent`` in the message headers), and so is its run
span (``traceparent`` on the outbox row).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from automate_core.models import OutboxItem
from tests.engine_support import start, stop, wait_for, worker_env
from tests.observability.conftest import notify_workflow, send_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]


def _sdk_path() -> str:
    import opentelemetry.sdk

    return str(Path(opentelemetry.sdk.__path__[0]).parent.parent)


def test_traces_celery__the_worker_continues_the_webhook_trace(
    postgres,
    redis_url,
    celery_queue,
    exporter,
    target,
    loopback,
    csrf_client,
    tmp_path,
):
    span_file = tmp_path / "spans.jsonl"
    notify_workflow(target.url("/hook"))
    env = {
        "AUTOMATE_TEST_SPAN_FILE": str(span_file),
        "DJANGO_SETTINGS_MODULE": "tests.observability.worker_settings",
        "PYTHONPATH": os.pathsep.join(
            [os.environ.get("PYTHONPATH", ""), _sdk_path(), "src", ".", "example"]
        ),
    }
    args = ["-m", "celery", "-A", "tests.observability.otel_celery_app", "worker"]
    args += ["--pool", "threads", "--concurrency", "2", "--queues", celery_queue]
    args += ["--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    worker = start(
        args,
        worker_env(AUTOMATE_WORKER_BROKER_URL=redis_url, AUTOMATE_WORKER_QUEUE=celery_queue, **env),
    )
    try:
        response = send_event(csrf_client)
        assert response.status_code == 202
        wait_for(
            lambda: OutboxItem.objects.filter(status__in=["done", "dead"]).exists(),
            timeout=60,
            what="the Celery worker to finish the event",
        )
        wait_for(
            lambda: span_file.exists() and "HTTP POST" in span_file.read_text(),
            timeout=10,
            what="the worker's spans",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the worker said: {stop(worker)[-3000:]}") from None
    finally:
        errors = stop(worker)
    assert OutboxItem.objects.get().status == "done", errors[-2000:]

    here = {s.name: s for s in exporter.get_finished_spans()}
    root = here["POST /webhooks/{connector_key}/"]
    trace_id = f"0x{root.context.trace_id:032x}"
    assert response.json()["trace_id"] == trace_id[2:]

    remote = [json.loads(line) for line in span_file.read_text().splitlines() if line]
    by_name = {s["name"]: s for s in remote}
    assert {s["context"]["trace_id"] for s in remote} == {trace_id}
    task = by_name["automate.task automate.dispatch"]
    assert task["kind"] == "SpanKind.CONSUMER"
    assert task["parent_id"] == f"0x{root.context.span_id:016x}"
    run = by_name["automate.run"]
    assert run["parent_id"] == f"0x{root.context.span_id:016x}"
    step = by_name["automate.step http_request"]
    assert step["parent_id"] == run["context"]["span_id"]
    http = by_name["HTTP POST"]
    assert http["parent_id"] == step["context"]["span_id"]
    [(_, _, headers, _)] = target.requests
    assert headers["traceparent"].split("-")[1:3] == [trace_id[2:], http["context"]["span_id"][2:]]

"""Observability fixtures: an SDK tracer provider with the in-memory exporter, a signed
webhook workflow that calls a local HTTP server, and the URLs of /health/ and /metrics."""

from __future__ import annotations

import json

import pytest

from automate.services import WorkflowService
from automate_core.observability import spans
from tests.automate.test_webhook_view import post, sign
from tests.conftest import service_missing
from tests.core.helpers import LocalServer, send

LOOPBACK = {"HTTP_ALLOW_NETWORKS": ["127.0.0.0/8"], "HTTP_ALLOWED_PORTS": "*"}


@pytest.fixture
def exporter():
    """Spans of this test, recorded by the SDK (the ``otel`` extra) in memory."""
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
    except ImportError:
        service_missing(
            "opentelemetry-sdk is not installed (pip install './django-automate[otel]')"
        )
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    spans.configure(provider)
    yield memory
    spans.configure(None)
    provider.shutdown()


@pytest.fixture
def prometheus():
    try:
        import prometheus_client
    except ImportError:
        service_missing(
            "prometheus-client is not installed (pip install './django-automate[prometheus]')"
        )
    return prometheus_client


@pytest.fixture
def target():
    """A local HTTP server answering ``POST /hook`` with 200 (and ``/fail`` with 500)."""
    server = LocalServer()
    server.routes["/hook"] = lambda h: send(
        h, 200, b'{"ok": true}', {"Content-Type": "application/json"}
    )
    server.routes["/fail"] = lambda h: send(
        h, 500, b'{"ok": false}', {"Content-Type": "application/json"}
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def loopback(settings):
    settings.AUTOMATE = {**settings.AUTOMATE, **LOOPBACK}


def notify_workflow(url: str, key: str = "notify", max_attempts: int = 3):
    """A workflow on ``my_service`` events: POST the event's order id to ``url``."""
    return WorkflowService().create_workflow(
        name="Notify",
        key=key,
        trigger={"connector": "my_service", "events": ["order.*"]},
        steps=[
            {
                "name": "Notify",
                "type": "http_request",
                "retry": {"max_attempts": max_attempts},
                "config": {
                    "method": "POST",
                    "url": url,
                    "json": {"order": "{{ event.payload.order }}"},
                },
            }
        ],
    )


def send_event(client, event_id: str = "evt_1", secret_value: str = "s3cr3t-payload"):
    """POST one signed ``order.paid`` webhook whose payload holds ``secret_value``."""
    body = json.dumps(
        {"id": event_id, "type": "order.paid", "order": 7, "card": secret_value}
    ).encode()
    return post(client, body, signature=sign(body))


def drain() -> dict[str, int]:
    from automate.worker import EmbeddedWorker

    return EmbeddedWorker(threads=1, poll_seconds=0).run(once=True)

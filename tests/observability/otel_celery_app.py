"""The test suite's Celery app with an OpenTelemetry SDK provider writing each finished
span as one JSON line to ``AUTOMATE_TEST_SPAN_FILE`` (the worker process's spans, read
back by test_traces_celery.py)."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from tests.celery_app import app  # noqa: F401  (what `celery -A` loads)

_out = open(os.environ["AUTOMATE_TEST_SPAN_FILE"], "a", buffering=1)  # noqa: SIM115
_provider = TracerProvider()
_provider.add_span_processor(
    SimpleSpanProcessor(
        ConsoleSpanExporter(out=_out, formatter=lambda span: span.to_json(indent=None) + "\n")
    )
)
trace.set_tracer_provider(_provider)

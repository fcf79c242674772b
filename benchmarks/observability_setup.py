"""Traces on for a benchmarked process: an SDK tracer provider whose batch processor
exports to nowhere, so the measured cost is the spans' own (made, filled, queued) and
not a collector's. Metrics need only ``PROMETHEUS_MULTIPROC_DIR``, set by the caller."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def start_tracing() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class _Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    trace.set_tracer_provider(provider)

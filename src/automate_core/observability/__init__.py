"""Traces, metrics and structured logs: optional, and free when off.

* :mod:`~automate_core.observability.spans`: OpenTelemetry spans (the ``otel`` extra).
  Without ``opentelemetry``, or with no SDK tracer provider configured, every helper
  returns one shared no-op object: nothing is recorded and nothing is allocated.
* :mod:`~automate_core.observability.metrics`: Prometheus counters and histograms (the
  ``prometheus`` extra), multiprocess-safe under ``PROMETHEUS_MULTIPROC_DIR``; no-ops
  without ``prometheus_client``.
* :mod:`~automate_core.observability.logs`: one structured line per decision, as
  ``key=value`` text or JSON lines (``AUTOMATE["LOG_JSON"]``).

The engine calls these through one-line hooks; see docs/observability.md.
"""

from __future__ import annotations

from automate_core.observability import logs, metrics, spans

__all__ = ["logs", "metrics", "spans"]

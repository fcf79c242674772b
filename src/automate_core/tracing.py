"""The trace id of the current request or run, kept in a ContextVar.

``WebhookView`` starts a trace per request; workers restore the trace id stored on the
outbox row, so one id follows an event from the HTTP request to the last step. Add
:class:`TraceIdFilter` to a handler to get ``%(trace_id)s`` in log formats.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_trace_id: ContextVar[str | None] = ContextVar("automate_trace_id", default=None)


def new_trace_id() -> str:
    return uuid.uuid4().hex


def get_trace_id() -> str | None:
    return _trace_id.get()


@contextmanager
def trace(trace_id: str | None = None) -> Iterator[str]:
    """Bind ``trace_id`` (a new one when omitted) for the duration of the block."""
    value = trace_id or new_trace_id()
    token = _trace_id.set(value)
    try:
        yield value
    finally:
        _trace_id.reset(token)


class TraceIdFilter(logging.Filter):
    """Sets ``record.trace_id`` ("-" outside a trace) so formats can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id = _trace_id.get() or "-"
        return True

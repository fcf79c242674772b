"""The trace id of the current request or run, kept in a ContextVar.

``WebhookView`` starts a trace per request; workers restore the trace id stored on the
outbox row, so one id follows an event from the HTTP request to the last step. Add
:class:`TraceIdFilter` to a handler to get ``%(trace_id)s`` in log formats.
"""

from __future__ import annotations

import logging
import os
import time
from contextvars import ContextVar, Token
from typing import Any

_trace_id: ContextVar[str | None] = ContextVar("automate_trace_id", default=None)

#: UUID version 7's timestamp is 48 bits of milliseconds (until the year 10889).
_MS_SPAN = 1 << 48


def new_trace_id() -> str:
    """32 hex digits: a UUID version 7 (RFC 9562) without building a ``UUID``, one is made
    per webhook.

    Time-ordered rather than random (version 4, as before): the first 48 bits are the Unix
    time in milliseconds, the other 74 free bits random. The outbox indexes its rows' trace
    ids, and a random key lands each new entry on a random page of that index: after every
    checkpoint PostgreSQL writes each page's first change whole to its WAL (a third of a
    webhook's WAL after a checkpoint, measured). Time-ordered ids are appended at the
    index's right edge. They are as unique (74 random bits per millisecond) and tell only
    when they were made, which the sender of a webhook knows anyway.
    """
    milliseconds = time.time_ns() // 1_000_000 % _MS_SPAN
    raw = bytearray(milliseconds.to_bytes(6, "big") + os.urandom(10))
    raw[6] = raw[6] & 0x0F | 0x70
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def get_trace_id() -> str | None:
    return _trace_id.get()


class trace:  # used as a function: ``with trace(...) as trace_id``
    """Bind ``trace_id`` (a new one when omitted) for the duration of the block.

    A class rather than a ``@contextmanager`` generator: every webhook enters one.
    """

    __slots__ = ("_token", "value")

    def __init__(self, trace_id: str | None = None) -> None:
        self.value = trace_id or new_trace_id()
        self._token: Token[str | None] | None = None

    def __enter__(self) -> str:
        self._token = _trace_id.set(self.value)
        return self.value

    def __exit__(self, *exc: Any) -> None:
        if self._token is not None:
            _trace_id.reset(self._token)
            self._token = None


class TraceIdFilter(logging.Filter):
    """Sets ``record.trace_id`` ("-" outside a trace) so formats can always use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "trace_id"):
            record.trace_id = _trace_id.get() or "-"
        return True

"""Scrubs resolved secret values from text and data before they are logged or stored.

The secret resolver calls :func:`remember` for every value it hands out; :func:`redact`
and :func:`redact_data` replace those values wherever they appear, and
:class:`RedactingFilter` does it for log records.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

MASK = "[redacted]"
# Short values would mask innocent text ("a", "1"); nobody uses them as secrets.
MIN_LENGTH = 6
_MAX_REMEMBERED = 10_000

_lock = threading.Lock()
_values: dict[str, None] = {}  # insertion-ordered set, oldest evicted first


def remember(value: str) -> None:
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    with _lock:
        _values.pop(value, None)
        _values[str(value)] = None
        while len(_values) > _MAX_REMEMBERED:
            _values.pop(next(iter(_values)))


def forget_all() -> None:
    with _lock:
        _values.clear()


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        values = sorted(_values, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_data(data: Any) -> Any:
    """Redact every string inside JSON-like data (dicts, lists, tuples, strings)."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(k): redact_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(redact_data(v) for v in data)
    return data


class RedactingFilter(logging.Filter):
    """Replaces remembered secret values in a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is logging's problem, not ours
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            scrubbed = redact(text)
            if scrubbed != text:
                record.exc_info, record.exc_text = None, scrubbed
        return True

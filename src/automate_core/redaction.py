"""Scrubs resolved secret values from text and data before they are logged or stored.

The secret resolver calls :func:`remember` for every value it hands out; :func:`redact`
and :func:`redact_data` replace those values wherever they appear, and
:class:`RedactingFilter` does it for log records.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "[redacted]"
# Short values would mask innocent text ("a", "1"); nobody uses them as secrets.
MIN_LENGTH = 6
_MAX_REMEMBERED = 10_000

_lock = threading.Lock()
_values: dict[str, None] = {}  # insertion-ordered set, oldest evicted first
_pattern: re.Pattern[str] | None = None  # all of them, longest first; None: rebuild


def _forms(value: str) -> set[str]:
    """The value as it may appear in a URL, a form body or a JSON document."""
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    return {form for form in forms if len(form) >= MIN_LENGTH}


def remember(value: str) -> None:
    """Scrub ``value`` (and its URL- and JSON-escaped forms) from now on."""
    if not isinstance(value, str) or len(value) < MIN_LENGTH:
        return
    global _pattern
    with _lock:
        for form in _forms(str(value)):
            if form not in _values:
                _pattern = None
            _values.pop(form, None)
            _values[form] = None
        while len(_values) > _MAX_REMEMBERED:
            _values.pop(next(iter(_values)))
            _pattern = None


def forget_all() -> None:
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None


def redact(text: str) -> str:
    if not text or not _values:
        return text
    pattern = _pattern or _compile()
    return pattern.sub(MASK, text)


def _compile() -> re.Pattern[str]:
    """One alternation of every remembered form, longest first, so that a value that
    contains another is masked whole; rebuilt only when the set changes."""
    global _pattern
    with _lock:
        if _pattern is None:
            forms = sorted(_values, key=len, reverse=True)
            alternatives = "|".join(re.escape(form) for form in forms)
            _pattern = re.compile(alternatives or "(?!)")  # (?!) never matches
        return _pattern


def redact_data(data: Any) -> Any:
    """Redact every string inside JSON-like data (dicts, lists, tuples, strings)."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        if _values:
            # One search over every key and value (a webhook's headers), and a plain copy
            # when none matches. A match is always found in the joined text; one across a
            # separator only sends them the long way; join() refuses anything not a str
            # (a str subclass is copied as it is, where the long way gives a str).
            try:
                text = "\n".join([*data, *data.values()])
            except TypeError:
                pass
            else:
                if (_pattern or _compile()).search(text) is None:
                    return dict(data.items())
        # A str key or value (every header of a webhook) redacted without recursing.
        return {
            (redact(k) if type(k) is str else redact_data(k)): (
                redact(v) if type(v) is str else redact_data(v)
            )
            for k, v in data.items()
        }
    if isinstance(data, list | tuple):
        return type(data)(redact_data(v) for v in data)
    return data


def scrub_exception(exc: BaseException) -> BaseException:
    """Redact an exception's message, arguments and details, and those of its causes.

    Changes ``exc`` in place (so ``raise`` keeps its type and traceback) and returns it.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(redact_data(arg) for arg in current.args)
        for attribute in ("message", "details"):
            value = getattr(current, attribute, None)
            if isinstance(value, str | dict | list):
                with contextlib.suppress(AttributeError):  # read-only on some types
                    setattr(current, attribute, redact_data(value))
        current = current.__cause__ or current.__context__
    return exc


# Attributes every LogRecord has; anything else came in through ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
}


class RedactingFilter(logging.Filter):
    """Replaces remembered secret values in a record's message, arguments, ``extra=``
    fields, exception text and stack.

    Attach it to handlers (``"filters": ["redact"]`` in ``LOGGING``): a filter on a handler
    sees records from every logger that reaches it, a filter on a logger does not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _values:
            return True
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
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _RECORD_FIELDS and isinstance(value, str | dict | list | tuple):
                setattr(record, name, redact_data(value))
        return True

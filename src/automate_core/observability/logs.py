"""One structured log line per decision: a webhook answered, a run ended, a step failed.

Each line goes to the logger ``automate.events`` with a fixed set of fields (``event``,
``trace_id``, names, codes, counts; never a payload, body, header value or secret). The
message is ``key=value`` text, or one JSON object per line when ``AUTOMATE["LOG_JSON"]``
is true, so any handler shows it; the same fields are attributes of the record
(``record.event``, ``record.trace_id``...) for handlers that format records themselves.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from automate_core.conf import settings as core_settings

__all__ = ["LOGGER_NAME", "enabled", "event"]

LOGGER_NAME = "automate.events"
logger = logging.getLogger(LOGGER_NAME)

# Record attributes the logging module owns; a field of that name is not set as extra.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def enabled(level: int = logging.INFO) -> bool:
    """Whether a line at ``level`` would be logged: callers skip building its fields."""
    return logger.isEnabledFor(level)


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log the event ``name`` with ``fields`` (None values left out)."""
    if not logger.isEnabledFor(level):
        return
    data = {"event": name, **{k: v for k, v in fields.items() if v is not None}}
    if core_settings.LOG_JSON:
        message = json.dumps(data, default=str, separators=(",", ":"))
    else:
        message = " ".join(f"{key}={_text(value)}" for key, value in data.items())
    extra = {k: v for k, v in data.items() if k not in _RESERVED}
    logger.log(level, "%s", message, extra=extra)


def _text(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text

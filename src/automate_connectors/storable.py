"""Make a verified event storable on every supported database, losing nothing.

A correctly signed body may still hold what no database column takes: PostgreSQL rejects
NUL characters in text and in ``jsonb`` (``"\\u0000"``), no database driver encodes a lone
surrogate (``"\\ud800"``), and ``json.loads`` accepts both as well as ``NaN`` and
``Infinity``, which are not JSON. An external id may be longer than the column. Each of
these would turn an accepted delivery into a 500, which the sender retries forever. So
``WebhookView`` passes every connector's event (built-in or a project's own) through
:func:`storable` before writing it:

* a payload holding any of these is kept as the raw bytes instead (they are what was signed);
* an event type loses the offending characters (it is a label for matching workflows);
* an external id that is too long or unstorable is replaced by ``sha256:<hex>`` of it, which
  still deduplicates repeats of the same id.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from typing import Any

from automate_connectors.webhooks import WebhookEvent

#: Length of ``OutboxItem.external_id``.
MAX_EXTERNAL_ID = 255
#: ``OutboxItem.event_type`` keeps this many characters.
MAX_EVENT_TYPE = 200


def _bad_text(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _unstorable(value: Any) -> bool:
    """True when a string (keys included) or a float inside ``value`` cannot be stored.

    Every verified webhook's payload is walked: the exact types ``json.loads`` makes are
    checked where they are met (a string is looked at again only when it is not ASCII,
    which a NUL aside is always storable), anything else (a subclass) as before.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, member in item.items():
                if type(key) is str:
                    if "\x00" in key or (not key.isascii() and _bad_text(key)):
                        return True
                else:
                    stack.append(key)
                kind = type(member)
                if kind is str:
                    if "\x00" in member or (not member.isascii() and _bad_text(member)):
                        return True
                elif kind is float:
                    if not math.isfinite(member):
                        return True
                elif kind not in _SCALARS:
                    stack.append(member)
        elif kind is list:
            stack.extend(item)
        elif kind in _SCALARS:
            continue
        elif isinstance(item, str):
            if _bad_text(item):
                return True
        elif isinstance(item, float):
            if not math.isfinite(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


#: Values that are always storable (bool is an int).
_SCALARS = frozenset({int, bool, type(None)})


def is_storable(value: Any) -> bool:
    """False when a string (keys included) or a float inside ``value`` cannot be stored."""
    return not _unstorable(value)


def _clean_label(text: str) -> str:
    if text.isascii() and "\x00" not in text:  # every label a sender means (no copy)
        return text[:MAX_EVENT_TYPE]
    cleaned = "".join(ch for ch in text if ch != "\x00" and not "\ud800" <= ch <= "\udfff")
    return cleaned[:MAX_EVENT_TYPE]


def _storable_id(external_id: str | None) -> str | None:
    if not external_id:
        return None
    if len(external_id) <= MAX_EXTERNAL_ID and not _bad_text(external_id):
        return external_id
    digest = hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"sha256:{digest}"


def storable(event: WebhookEvent, raw_body: bytes) -> WebhookEvent:
    """``event`` with every field in a form the outbox row can hold."""
    payload, kept_body = event.payload, event.raw_body
    if payload is not None and _unstorable(payload):
        payload, kept_body = None, raw_body
    event_type = _clean_label(event.event_type or "")
    external_id = _storable_id(event.external_id)
    if (
        event_type is event.event_type
        and external_id is event.external_id
        and payload is event.payload
        and kept_body is event.raw_body
    ):
        return event  # already storable, as nearly every event is: no copy
    return replace(
        event,
        event_type=event_type,
        external_id=external_id,
        payload=payload,
        raw_body=kept_body,
    )

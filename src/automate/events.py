"""Start workflows from your own code, in your own transaction: :func:`emit`.

Data flow: ``emit()`` writes one outbox row in the caller's transaction (the classic
transactional outbox) -> once that transaction commits, :data:`automate.signals.event_accepted`
is sent, exactly as for an accepted webhook -> a worker claims the row and runs every
enabled workflow whose trigger matches ``(source, event_type)``::

    from django.db import transaction
    from automate import emit

    with transaction.atomic():
        order.status = "paid"
        order.save()
        emit("order.paid", {"order_id": order.pk}, key=f"order-{order.pk}-paid")

A rollback takes the row with it, so no run starts for a change that never happened.
``source`` plays the part of a connection key (workflows subscribe with
``{"connector": "app", "events": ["order.*"]}``) but needs no ``ConnectionProfile``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from automate import signals
from automate.conf import settings as app_settings
from automate.models import EMIT_SOURCE_HEADER
from automate_core.outbox import queue
from automate_core.outbox.models import OutboxItem
from automate_core.tracing import get_trace_id, new_trace_id

__all__ = ["emit"]

#: Like a connection key: it is the ``connector`` a trigger names.
SOURCE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,99}$")
MAX_EVENT_TYPE = 200
MAX_KEY = 255


def emit(
    event_type: str, payload: dict, *, source: str = "app", key: str | None = None
) -> OutboxItem:
    """Record an event in the current transaction; workflows start once it commits.

    ``key`` makes the event idempotent, like a provider's event id: a second ``emit`` with
    the same ``source`` and ``key`` (even a concurrent one) returns the first row and
    starts nothing. The insert runs in a savepoint, so a repeat leaves the caller's
    transaction usable.

    ``payload`` must be a JSON object of plain values (dict with string keys, list, str,
    int, float, bool, None), at most ``AUTOMATE["EMIT_MAX_DEPTH"]`` levels deep and
    ``AUTOMATE["EMIT_MAX_PAYLOAD_BYTES"]`` bytes of JSON: anything else raises
    ``TypeError`` or ``ValueError`` naming the path at fault, and nothing is written.
    """
    _check_arguments(event_type, source, key)
    check_payload(payload)
    result = queue.enqueue(
        source,
        event_type=event_type,
        payload=payload,
        external_id=key,
        # event.source is "emit": a workflow can tell the project's own events apart.
        headers={EMIT_SOURCE_HEADER: "emit"},
        trace_id=get_trace_id() or new_trace_id(),
    )
    if result.created:
        item = result.item
        # Outside any transaction on_commit runs at once: the row is already committed.
        transaction.on_commit(lambda: signals.event_accepted.send(sender=source, item=item))
    return result.item


def _check_arguments(event_type: Any, source: Any, key: Any) -> None:
    if not isinstance(event_type, str):
        raise TypeError(f"event_type must be a string, not {type(event_type).__name__}")
    if not event_type or len(event_type) > MAX_EVENT_TYPE:
        raise ValueError(f"event_type must be 1 to {MAX_EVENT_TYPE} characters")
    if not isinstance(source, str):
        raise TypeError(f"source must be a string, not {type(source).__name__}")
    if not SOURCE_PATTERN.match(source):
        raise ValueError(
            f"source {source!r} must look like a connection key: lower-case letters, "
            "digits, '_' and '-', starting with a letter or digit (max 100)"
        )
    if key is not None:
        if not isinstance(key, str):
            raise TypeError(f"key must be a string or None, not {type(key).__name__}")
        if not key or len(key) > MAX_KEY:
            raise ValueError(f"key must be 1 to {MAX_KEY} characters")


def check_payload(payload: Any) -> None:
    """Raise ``TypeError``/``ValueError`` naming the path unless ``payload`` is a JSON
    object within ``EMIT_MAX_DEPTH`` and ``EMIT_MAX_PAYLOAD_BYTES``."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"payload must be a dict, not {type(payload).__name__}")
    max_depth = app_settings.EMIT_MAX_DEPTH
    # Iterative, so a deep or self-referencing value meets the depth limit, never Python's
    # recursion limit.
    stack: list[tuple[Any, str, int]] = [(payload, "payload", 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, Mapping | list | tuple):
            if depth > max_depth:
                raise ValueError(
                    f'{path}: nested deeper than AUTOMATE["EMIT_MAX_DEPTH"] ({max_depth})'
                )
            if isinstance(value, Mapping):
                for name, child in value.items():
                    if not isinstance(name, str):
                        raise TypeError(f"{path}: key {name!r} is not a string")
                    stack.append((child, f"{path}[{name!r}]", depth + 1))
            else:
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(value))
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{path}: {value!r} is not a JSON number")
        elif value is not None and not isinstance(value, str | int | bool):
            raise TypeError(
                f"{path}: {type(value).__name__} is not JSON-serializable "
                "(convert it to a str, number, bool, list or dict)"
            )
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    limit = app_settings.EMIT_MAX_PAYLOAD_BYTES
    if size > limit:
        raise ValueError(
            f'payload is {size} bytes of JSON, more than AUTOMATE["EMIT_MAX_PAYLOAD_BYTES"] '
            f"({limit})"
        )

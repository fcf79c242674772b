"""``send_webhook``: store a message and one outbox item per matching endpoint.

Everything happens in the caller's transaction (the transactional outbox): a rollback
leaves no message and no delivery, a commit makes them due at once and nudges a worker.
Each (message, endpoint) delivery is its own outbox item, so one slow or failing endpoint
never holds up the others.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, models, transaction

from automate.outgoing.models import OutgoingMessage, WebhookEndpoint
from automate.signals import event_accepted
from automate_core.outbox.models import OutboxItem
from automate_core.tracing import get_trace_id, new_trace_id

__all__ = [
    "OUTGOING_KEY",
    "TEST_EVENT_TYPE",
    "owner_label",
    "replay_message",
    "send_test_event",
    "send_webhook",
]

#: The connector key of delivery items. A dot can never be in a connection key (see
#: ``automate.models.key_validator``), so no workflow trigger or webhook URL matches it.
OUTGOING_KEY = "automate.outgoing"
#: The event type of the admin's "send test event".
TEST_EVENT_TYPE = "webhook.test"


def owner_label(owner: Any) -> str:
    """The stored form of an owner: a string as is, a model instance as ``app.model:pk``,
    ``None`` as ``""`` (the project's own endpoints)."""
    if owner is None:
        return ""
    if isinstance(owner, models.Model):
        return f"{owner._meta.label_lower}:{owner.pk}"
    return str(owner)


def send_webhook(
    event_type: str, payload: Any, *, owner: Any = None, key: str | None = None
) -> OutgoingMessage:
    """Send ``payload`` as ``event_type`` to every enabled endpoint of ``owner`` whose
    event types match; return the message (``webhook-id`` is its ``uid``).

    Runs in the caller's transaction: nothing is sent unless it commits. With ``key``, a
    repeat (same owner and key) returns the first message and sends nothing more. The
    message's ``fanned_out`` says how many deliveries this call queued.
    """
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("send_webhook needs a non-empty event type")
    label = owner_label(owner)
    with transaction.atomic():
        if key is not None:
            existing = OutgoingMessage.objects.filter(owner=label, key=key).first()
            if existing is not None:
                existing.fanned_out = 0  # type: ignore[attr-defined]
                return existing
        message = OutgoingMessage(owner=label, event_type=event_type, payload=payload, key=key)
        try:
            with transaction.atomic():
                message.save(force_insert=True)
        except IntegrityError:
            if key is None:
                raise
            # A concurrent call with the same key committed first.
            existing = OutgoingMessage.objects.get(owner=label, key=key)
            existing.fanned_out = 0  # type: ignore[attr-defined]
            return existing
        endpoints = WebhookEndpoint.objects.filter(owner=label, enabled=True).order_by("id")
        matching = [e for e in endpoints if e.matches(event_type)]
        queue_deliveries(message, matching)
    message.fanned_out = len(matching)  # type: ignore[attr-defined]
    return message


def queue_deliveries(
    message: OutgoingMessage, endpoints: Iterable[WebhookEndpoint], *, replay: bool = False
) -> list[OutboxItem]:
    """One outbox item per endpoint, in the caller's transaction, processed on commit.

    A first delivery's external id is ``<uid>:<endpoint id>`` (unique: queued once); a
    replay's has none, so a message can be replayed any number of times.
    """
    trace_id = get_trace_id() or new_trace_id()
    items = [
        OutboxItem(
            connector_key=OUTGOING_KEY,
            event_type=message.event_type[:200],
            external_id=None if replay else f"{message.uid}:{endpoint.pk}",
            payload={"message": message.pk, "endpoint": endpoint.pk},
            trace_id=trace_id,
        )
        for endpoint in endpoints
    ]
    if not items:
        return []
    OutboxItem.objects.bulk_create(items)
    first = items[0]
    # One nudge per call: the worker that wakes claims a batch.
    transaction.on_commit(lambda: event_accepted.send(sender=OUTGOING_KEY, item=first))
    return items


def send_test_event(endpoint: WebhookEndpoint) -> OutgoingMessage:
    """Send a ``webhook.test`` message to ``endpoint`` only, whatever its event types."""
    with transaction.atomic():
        message = OutgoingMessage.objects.create(
            owner=endpoint.owner,
            event_type=TEST_EVENT_TYPE,
            payload={"message": "a test event sent from the admin", "endpoint": endpoint.pk},
        )
        queue_deliveries(message, [endpoint])
    return message


def replay_message(
    message: OutgoingMessage, endpoints: Iterable[WebhookEndpoint] | None = None
) -> int:
    """Send ``message`` again (same ``webhook-id``) to ``endpoints``, by default every
    enabled endpoint of its owner that matches it now; return how many were queued."""
    with transaction.atomic():
        if endpoints is None:
            found = WebhookEndpoint.objects.filter(owner=message.owner, enabled=True)
            endpoints = [e for e in found.order_by("id") if e.matches(message.event_type)]
        return len(queue_deliveries(message, list(endpoints), replay=True))

"""Sending webhooks: signed (Standard Webhooks), retried, SSRF-safe deliveries to the
endpoints a project's users register.

Data flow: :func:`send_webhook` (in the caller's transaction) stores an
:class:`OutgoingMessage` and one outbox item per matching enabled
:class:`WebhookEndpoint` -> a worker claims the items like any other -> the dispatcher
hands the items of :data:`OUTGOING_KEY` to :mod:`automate.outgoing.delivery`, which signs,
sends through the SSRF-safe client, records a :class:`DeliveryAttempt` and settles the item
(done, retry on the schedule, dead letter). See docs/sending-webhooks.md.

Import the public names from here (or ``send_webhook`` from ``automate``); the models
are importable from ``automate.models`` too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automate_core.exports import lazy_exports

if TYPE_CHECKING:
    from automate.outgoing.api import OUTGOING_KEY, replay_message, send_test_event, send_webhook
    from automate.outgoing.models import (
        DeliveryAttempt,
        EndpointSecret,
        OutgoingMessage,
        WebhookEndpoint,
    )
    from automate.outgoing.signals import endpoint_disabled

__all__ = [
    "OUTGOING_KEY",
    "DeliveryAttempt",
    "EndpointSecret",
    "OutgoingMessage",
    "WebhookEndpoint",
    "endpoint_disabled",
    "replay_message",
    "send_test_event",
    "send_webhook",
]

_LAZY = {
    "OUTGOING_KEY": "automate.outgoing.api",
    "replay_message": "automate.outgoing.api",
    "send_test_event": "automate.outgoing.api",
    "send_webhook": "automate.outgoing.api",
    "DeliveryAttempt": "automate.outgoing.models",
    "EndpointSecret": "automate.outgoing.models",
    "OutgoingMessage": "automate.outgoing.models",
    "WebhookEndpoint": "automate.outgoing.models",
    "endpoint_disabled": "automate.outgoing.signals",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

"""Standard Webhooks (standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``,
``webhook-signature``, as sent by every service that adopted the specification, and the same
scheme under Svix's names ``svix-id``, ``svix-timestamp``, ``svix-signature``.

Configure it with the endpoint's ``whsec_...`` secret (the base64 key after the prefix)::

    AUTOMATE = {"CONNECTORS": {"standard_webhooks": {"secrets": ["secret://WEBHOOK_SECRET"]}}}

To receive from several such senders, give each its own key in ``CONNECTORS`` with
``"connector": "standard_webhooks"`` (the key is the URL segment). The external id is the
``webhook-id`` (or ``svix-id``) header, which stays the same across retries; the event type
is the payload's ``type``, as the specification's payload structure recommends. One request
is read with one family of headers, never a mix (see ``standard_webhooks_headers``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from automate_connectors.base import Connector, TriggerSpec, WebhookEvent
from automate_connectors.verification import (
    DEFAULT_TOLERANCE,
    standard_webhooks_headers,
    verify_standard_webhooks,
)


class StandardWebhooksConfig(BaseModel):
    """``tolerance_seconds``: how far ``webhook-timestamp`` may be from now (replay window)."""

    model_config = ConfigDict(extra="forbid")

    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE, ge=1, le=24 * 3600)


class StandardWebhooksConnector(Connector):
    """Receives webhooks signed per the Standard Webhooks specification (symmetric v1)."""

    key = "standard_webhooks"
    display_name = "Standard Webhooks"

    event_id_header = "webhook-id"
    webhook_headers = ("webhook-timestamp", "svix-id", "svix-timestamp")
    #: Seconds since the epoch; replaced in tests to check signatures dated in the past.
    clock: ClassVar[Callable[[], float]] = staticmethod(time.time)

    cfg: StandardWebhooksConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return StandardWebhooksConfig

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [
            TriggerSpec(
                name="event",
                verification_method="standard-webhooks-v1",
                description="Any event; its type is the payload's `type`.",
            )
        ]

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        msg_id, timestamp, signature = standard_webhooks_headers(headers)
        return verify_standard_webhooks(
            self.secret,
            raw_body,
            msg_id,
            timestamp,
            signature,
            tolerance=self.cfg.tolerance_seconds,
            clock=type(self).clock,
        )

    def webhook_replay_content(
        self, headers: Mapping[str, str], raw_body: bytes, event: WebhookEvent
    ) -> bytes | None:
        """None: the message id is signed, so the outbox's id dedupe stops replays."""
        return None

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        # The id of the family that was verified, so a Svix retry deduplicates too.
        event = super().parse_webhook(headers, raw_body)
        msg_id = standard_webhooks_headers(headers)[0]
        if isinstance(msg_id, str) and msg_id:
            return WebhookEvent(event.event_type, msg_id, event.payload, event.raw_body)
        return event

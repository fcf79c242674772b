"""Stripe webhooks: ``Stripe-Signature`` (``t=...,v1=...``), deduplicated on the event id.

Configure it with the endpoint's signing secret (the whole ``whsec_...`` string)::

    AUTOMATE = {"CONNECTORS": {"stripe": {"secrets": ["secret://STRIPE_WEBHOOK_SECRET"]}}}

While a secret is being rolled in the Stripe dashboard, list both: every active secret is
tried. The event type is the payload's ``type`` (``invoice.paid``...) and the external id its
``id`` (``evt_...``), which Stripe keeps across retries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from automate_connectors.base import Connector, TriggerSpec
from automate_connectors.verification import DEFAULT_TOLERANCE, verify_stripe


class StripeConfig(BaseModel):
    """``tolerance_seconds``: how far the signed timestamp may be from now (replay window)."""

    model_config = ConfigDict(extra="forbid")

    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE, ge=1, le=24 * 3600)


class StripeConnector(Connector):
    """Receives Stripe events (snapshot and thin events alike)."""

    key = "stripe"
    display_name = "Stripe"

    #: Seconds since the epoch; replaced in tests to check signatures dated in the past.
    clock: ClassVar[Callable[[], float]] = staticmethod(time.time)

    cfg: StripeConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return StripeConfig

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [
            TriggerSpec(
                name="event",
                verification_method="stripe-signature-v1",
                description="Any Stripe event; its type is the payload's `type`.",
            )
        ]

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        return verify_stripe(
            self.secret,
            raw_body,
            headers.get("Stripe-Signature"),
            tolerance=self.cfg.tolerance_seconds,
            clock=type(self).clock,
        )

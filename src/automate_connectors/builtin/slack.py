"""Slack requests: ``X-Slack-Signature`` (``v0=...``) with ``X-Slack-Request-Timestamp``.

One connector receives what a Slack app sends to a request URL:

* Events API (JSON): the ``url_verification`` challenge is answered at once and stored
  nowhere; an ``event_callback`` is stored with the inner ``event.type`` as its type and
  ``event_id`` as its external id, so Slack's retries of the same event are not stored twice;
* slash commands (form-encoded): type ``slash_command``, external id the ``trigger_id``;
* interactivity (form-encoded ``payload`` JSON): type from the payload (``block_actions``...).

Configure it with the app's signing secret::

    AUTOMATE = {"CONNECTORS": {"slack": {"secrets": ["secret://SLACK_SIGNING_SECRET"]}}}
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field

from automate_connectors.base import Connector, TriggerSpec, WebhookEvent
from automate_connectors.verification import DEFAULT_TOLERANCE, verify_slack


class SlackConfig(BaseModel):
    """``tolerance_seconds``: how far the request timestamp may be from now (replay window)."""

    model_config = ConfigDict(extra="forbid")

    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE, ge=1, le=24 * 3600)


class SlackConnector(Connector):
    """Receives Slack Events API callbacks, slash commands and interactions."""

    key = "slack"
    display_name = "Slack"

    webhook_headers = (
        "X-Slack-Request-Timestamp",
        "X-Slack-Retry-Num",
        "X-Slack-Retry-Reason",
    )
    #: Seconds since the epoch; replaced in tests to check signatures dated in the past.
    clock: ClassVar[Callable[[], float]] = staticmethod(time.time)

    cfg: SlackConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return SlackConfig

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        method = "slack-signature-v0"
        return [
            TriggerSpec(
                name="event",
                verification_method=method,
                description="Events API callback; its type is the inner event's `type`.",
            ),
            TriggerSpec(
                name="slash_command",
                verification_method=method,
                event_types=["slash_command"],
                description="A slash command (form-encoded).",
            ),
            TriggerSpec(
                name="interaction",
                verification_method=method,
                description="Interactivity payloads: block_actions, view_submission...",
            ),
        ]

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        return verify_slack(
            self.secret,
            raw_body,
            headers.get("X-Slack-Signature"),
            headers.get("X-Slack-Request-Timestamp"),
            tolerance=self.cfg.tolerance_seconds,
            clock=type(self).clock,
        )

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        payload = _slack_payload(raw_body)
        if not isinstance(payload, dict):
            # Not a shape Slack documents: keep the bytes, lose nothing.
            return WebhookEvent(event_type="", external_id=None, payload=None, raw_body=raw_body)
        event_type, external_id = _type_and_id(payload)
        event = WebhookEvent(event_type=event_type, external_id=external_id, payload=payload)
        return event

    def webhook_handshake(self, event: WebhookEvent) -> dict[str, Any] | None:
        """Answer the Events API ``url_verification`` challenge (sent when the URL is set)."""
        payload = event.payload
        if isinstance(payload, dict) and payload.get("type") == "url_verification":
            challenge = payload.get("challenge")
            if isinstance(challenge, str):
                return {"challenge": challenge}
        return None


def _slack_payload(raw_body: bytes) -> Any:
    """JSON for the Events API; form fields (or their ``payload`` JSON) otherwise."""
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except (ValueError, RecursionError):
            return None
    try:
        form = parse_qs(text, keep_blank_values=True, max_num_fields=1000)
    except (ValueError, RecursionError):
        return None
    fields = {name: values[-1] for name, values in form.items()}
    if "payload" in fields:
        try:
            return json.loads(fields["payload"])
        except (ValueError, RecursionError):
            return None
    return fields or None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _type_and_id(payload: dict[str, Any]) -> tuple[str, str | None]:
    kind = _text(payload.get("type"))
    if kind == "event_callback":
        event = payload.get("event")
        inner = _text(event.get("type")) if isinstance(event, dict) else None
        return inner or kind, _text(payload.get("event_id"))
    if kind is not None:
        # Interactions (block_actions, view_submission...) and other Events API envelopes.
        return kind, None
    if _text(payload.get("command")):
        return "slash_command", _text(payload.get("trigger_id"))
    return "", None

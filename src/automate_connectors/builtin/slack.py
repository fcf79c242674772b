"""Slack: Web API actions with a bot token; requests signed with ``X-Slack-Signature``.

Actions call the Web API (``chat.postMessage``, ``reactions.add``, ``reactions.remove``)
with the bot token given as a ``secret://`` reference (``bot_token``). Slack answers most
failures with HTTP 200 and ``{"ok": false, "error": "channel_not_found"}``: those error
strings are mapped to error codes (:data:`SLACK_ERRORS`), and an HTTP 429 becomes
RATE_LIMITED with Slack's ``Retry-After`` in ``details["retry_after"]``.

Verification (``X-Slack-Signature``, ``v0=...``, with ``X-Slack-Request-Timestamp``): one
connector receives what a Slack app sends to a request URL:

* Events API (JSON): the ``url_verification`` challenge is answered at once and stored
  nowhere; an ``event_callback`` is stored with the inner ``event.type`` as its type and
  ``event_id`` as its external id, so Slack's retries of the same event are not stored twice;
* slash commands (form-encoded): type ``slash_command``, external id the ``trigger_id``;
* interactivity (form-encoded ``payload`` JSON): type from the payload (``block_actions``...).

Configure it with the app's signing secret::

    AUTOMATE = {"CONNECTORS": {"slack": {"secrets": ["secret://SLACK_SIGNING_SECRET"]}}}

and, to send messages too, ``"config": {"bot_token": "secret://SLACK_BOT_TOKEN"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, field_validator

from automate_connectors.base import (
    ActionSpec,
    TriggerSpec,
    WebhookEvent,
)
from automate_connectors.builtin import _api
from automate_connectors.verification import DEFAULT_TOLERANCE, verify_slack
from automate_core.providers.errors import AutomateError, ErrorCodes

SLACK_API = "https://slack.com/api"

#: Slack Web API ``error`` strings -> error codes; anything else is INVALID_ARGUMENT.
SLACK_ERRORS: dict[str, ErrorCodes] = {
    **dict.fromkeys(
        (
            "not_authed",
            "invalid_auth",
            "account_inactive",
            "token_revoked",
            "token_expired",
        ),
        ErrorCodes.UNAUTHENTICATED,
    ),
    **dict.fromkeys(
        (
            "missing_scope",
            "no_permission",
            "not_allowed_token_type",
            "not_in_channel",
            "restricted_action",
            "restricted_action_read_only_channel",
            "restricted_action_thread_only_channel",
            "restricted_action_non_threadable_channel",
            "ekm_access_denied",
            "team_access_not_granted",
            "is_archived",
        ),
        ErrorCodes.PERMISSION_DENIED,
    ),
    **dict.fromkeys(
        ("channel_not_found", "message_not_found", "thread_not_found", "no_item_specified"),
        ErrorCodes.NOT_FOUND,
    ),
    "already_reacted": ErrorCodes.ALREADY_EXISTS,
    "ratelimited": ErrorCodes.RATE_LIMITED,
    **dict.fromkeys(
        ("internal_error", "fatal_error", "service_unavailable", "request_timeout"),
        ErrorCodes.UNAVAILABLE,
    ),
}

_CHANNEL = {"type": "string", "pattern": r"^[A-Za-z0-9#@_.-]{1,80}$"}
_TS = {"type": "string", "pattern": r"^[0-9]{1,12}\.[0-9]{1,8}$"}
_EMOJI = {"type": "string", "pattern": r"^:?[a-z0-9_+'-]{1,100}(::skin-tone-[2-6])?:?$"}


class SlackConfig(BaseModel):
    """Verification settings, and the optional Web API settings actions need.

    ``tolerance_seconds``: how far the request timestamp may be from now (replay window).
    ``bot_token``: a ``secret://`` reference to the ``xoxb-`` token (actions only).
    ``base_url``: the Web API root (``https://slack-gov.com/api`` for GovSlack).
    ``rate_limit``: e.g. ``"50/min"``, enforced before each call through RateLimiter.
    """

    model_config = ConfigDict(extra="forbid")

    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE, ge=1, le=24 * 3600)
    bot_token: str | None = None
    base_url: str = SLACK_API
    rate_limit: str | None = None
    timeout: float = Field(default=30.0, gt=0, le=300)

    _token = field_validator("bot_token", mode="before")(_api.check_secret_reference)
    _rate = field_validator("rate_limit")(_api.check_rate)
    _base = field_validator("base_url")(_api.check_service_url("https://slack.com/api"))


class SlackConnector(_api.ApiConnector):
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
    def actions(cls) -> list[ActionSpec]:
        reaction = {
            "type": "object",
            "properties": {"channel": _CHANNEL, "timestamp": _TS, "name": _EMOJI},
            "required": ["channel", "timestamp", "name"],
            "additionalProperties": False,
        }
        return [
            ActionSpec(
                name="post_message",
                description="chat.postMessage: post to a channel, or reply in a thread.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "channel": _CHANNEL,
                        "text": {"type": "string", "minLength": 1, "maxLength": 40000},
                        "blocks": {"type": "array", "items": {"type": "object"}},
                        "thread_ts": _TS,
                        "reply_broadcast": {"type": "boolean"},
                        "unfurl_links": {"type": "boolean"},
                        "mrkdwn": {"type": "boolean"},
                    },
                    "required": ["channel", "text"],
                    "additionalProperties": False,
                },
                output_schema={
                    "type": "object",
                    "properties": {"channel": {"type": "string"}, "ts": {"type": "string"}},
                    "required": ["channel", "ts"],
                },
                # Repeating it posts the message twice.
                idempotent=False,
            ),
            ActionSpec(
                name="add_reaction",
                description="reactions.add; a reaction already there counts as success.",
                input_schema=reaction,
                idempotent=True,
            ),
            ActionSpec(
                name="remove_reaction",
                description="reactions.remove; a reaction already gone counts as success.",
                input_schema=reaction,
                idempotent=True,
            ),
        ]

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

    # -- Actions -----------------------------------------------------------------------

    def execute_action(self, action: str, input_data: dict[str, Any]) -> dict[str, Any]:
        if action == "post_message":
            body = self._call("chat.postMessage", dict(input_data))
            channel, ts = body.get("channel"), body.get("ts")
            if not isinstance(channel, str) or not isinstance(ts, str):
                raise _unexpected("chat.postMessage answered without channel and ts")
            return {"channel": channel, "ts": ts}
        name = input_data["name"].strip(":")
        payload = {"channel": input_data["channel"], "timestamp": input_data["timestamp"]}
        payload["name"] = name
        method = "reactions.add" if action == "add_reaction" else "reactions.remove"
        # Already in the wanted state is success: both actions are idempotent.
        settled = "already_reacted" if action == "add_reaction" else "no_reaction"
        body = self._call(method, payload, settled=settled)
        return {"ok": True, "changed": body.get("error") != settled}

    def _call(self, method: str, payload: dict[str, Any], *, settled: str = "") -> dict:
        """POST one Web API method; ``{"ok": false}`` raises unless its error is ``settled``."""
        response = self.send("POST", f"/{method}", json=payload)
        body = _api.json_body(response, provider=self.key)
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            raise _unexpected(f"{method} answered without an 'ok' field")
        if body["ok"] or (settled and body.get("error") == settled):
            return body
        raise slack_error(method, body)

    def client_credentials(self) -> tuple[dict[str, str], None]:
        if not self.cfg.bot_token:
            raise AutomateError(
                ErrorCodes.CONFIGURATION,
                "slack actions need bot_token (a secret://NAME reference to the xoxb- "
                "token) in the connector config",
                provider=self.key,
            )
        token = self.ctx.resolve_secret(self.cfg.bot_token)
        return {"Authorization": f"Bearer {token}"}, None

    def rate_scope(self) -> tuple[str | None, ...]:
        return self.cfg.base_url, self.cfg.bot_token

    def normalize_error(self, exc: Exception) -> Exception:
        return _api.service_error(exc, provider=self.key)

    # -- Webhooks ------------------------------------------------------------------------

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

    def webhook_replay_content(
        self, headers: Mapping[str, str], raw_body: bytes, event: WebhookEvent
    ) -> bytes | None:
        """``v0:<timestamp>:<body>``, what Slack signs. Events API callbacks carry a signed
        ``event_id`` and slash commands a ``trigger_id``, but interactions
        (``block_actions``, ``view_submission``...) carry none: without this, one captured
        click could be replayed for as long as its timestamp is within the tolerance."""
        stamp = headers.get("X-Slack-Request-Timestamp") or ""
        return b"v0:" + stamp.encode() + b":" + raw_body

    def webhook_handshake(self, event: WebhookEvent) -> dict[str, Any] | None:
        """Answer the Events API ``url_verification`` challenge (sent when the URL is set)."""
        payload = event.payload
        if isinstance(payload, dict) and payload.get("type") == "url_verification":
            challenge = payload.get("challenge")
            if isinstance(challenge, str):
                return {"challenge": challenge}
        return None


def slack_error(method: str, body: dict[str, Any]) -> AutomateError:
    """The AutomateError for an ``{"ok": false}`` answer, Slack's error string kept."""
    error = body.get("error")
    reason = error if isinstance(error, str) and error else "unknown_error"
    code = SLACK_ERRORS.get(reason, ErrorCodes.INVALID_ARGUMENT)
    details: dict[str, Any] = {"slack_error": reason, "method": method}
    if isinstance(body.get("needed"), str):
        details["needed_scope"] = body["needed"]
    message = f"Slack {method} failed: {reason}"
    if isinstance(body.get("warning"), str):
        message += f" (warning: {body['warning']})"
    return AutomateError(code, message, provider="slack", details=details)


def _unexpected(what: str) -> AutomateError:
    return AutomateError(
        ErrorCodes.INTERNAL, f"unexpected Slack response: {what}", provider="slack"
    )


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

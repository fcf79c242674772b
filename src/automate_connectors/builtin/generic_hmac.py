"""A configurable HMAC verifier for senders without a built-in connector.

Most services sign webhooks the same way with small variations: which header, which hash,
hex or base64, a ``sha256=`` style prefix, sometimes a timestamp signed with the body. All
of it is configuration, so no code is needed::

    AUTOMATE = {"CONNECTORS": {"acme": {
        "connector": "generic_hmac",
        "secrets": ["secret://ACME_WEBHOOK_SECRET"],
        "config": {
            "header": "X-Acme-Signature",
            "algorithm": "sha256",         # sha1 | sha256 | sha512
            "encoding": "hex",             # hex | base64
            "prefix": "sha256=",
            "timestamp_header": "X-Acme-Timestamp",   # optional: signs "<ts>.<body>"
            "event_id_header": "X-Acme-Delivery",     # or event_id_field: "id"
            "event_type_field": "event.type",         # or event_type_header
        },
    }}}

The defaults (``X-Signature``, hex HMAC-SHA256 of the body, no prefix) match the
``MyWebhookConnector`` example of the integration guide.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from automate_connectors.base import Connector, TriggerSpec, WebhookEvent
from automate_connectors.verification import DEFAULT_TOLERANCE, Reason, refuse, verify_hmac
from automate_core.providers.base import ProviderContext

_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
_FIELD_PATH = r"^[^.\s]+(\.[^.\s]+)*$"


class GenericHmacConfig(BaseModel):
    """How the sender signs. Header names are case-insensitive; fields are dotted paths."""

    model_config = ConfigDict(extra="forbid")

    header: str = Field(default="X-Signature", pattern=_HEADER_NAME, max_length=100)
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(default="", max_length=50)
    timestamp_header: str | None = Field(default=None, pattern=_HEADER_NAME, max_length=100)
    timestamp_separator: str = Field(default=".", max_length=10)
    tolerance_seconds: int = Field(default=DEFAULT_TOLERANCE, ge=1, le=24 * 3600)
    event_id_header: str | None = Field(default=None, pattern=_HEADER_NAME, max_length=100)
    event_type_header: str | None = Field(default=None, pattern=_HEADER_NAME, max_length=100)
    event_id_field: str | None = Field(default=None, pattern=_FIELD_PATH, max_length=200)
    event_type_field: str | None = Field(default="type", pattern=_FIELD_PATH, max_length=200)


class GenericHmacConnector(Connector):
    """Verifies a configurable HMAC signature header; reads id and type where configured."""

    key = "generic_hmac"
    display_name = "Generic HMAC webhook"

    #: Seconds since the epoch; replaced in tests to check signatures dated in the past.
    clock: ClassVar[Callable[[], float]] = staticmethod(time.time)

    cfg: GenericHmacConfig

    def __init__(self, config: Mapping[str, Any] | None = None, *, ctx: ProviderContext) -> None:
        super().__init__(config, ctx=ctx)
        # The view keeps these headers on the outbox row; here they come from the config.
        self.event_id_header = self.cfg.event_id_header  # type: ignore[misc]
        self.event_type_header = self.cfg.event_type_header  # type: ignore[misc]
        self.webhook_headers = tuple(  # type: ignore[misc]
            h for h in (self.cfg.timestamp_header,) if h
        )

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return GenericHmacConfig

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [
            TriggerSpec(
                name="webhook",
                verification_method="hmac",
                description="Any signed request; id and type as configured.",
            )
        ]

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        cfg = self.cfg
        timestamp = None
        if cfg.timestamp_header:
            timestamp = headers.get(cfg.timestamp_header)
            if timestamp is None:
                return refuse(Reason.MISSING_HEADER)
        return verify_hmac(
            self.secret,
            raw_body,
            headers.get(cfg.header),
            algorithm=cfg.algorithm,
            encoding=cfg.encoding,
            prefix=cfg.prefix,
            timestamp=timestamp,
            separator=cfg.timestamp_separator,
            tolerance=cfg.tolerance_seconds,
            clock=type(self).clock,
        )

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        cfg = self.cfg
        payload = _json(raw_body)
        external_id = _header(headers, cfg.event_id_header) or _field(payload, cfg.event_id_field)
        event_type = _header(headers, cfg.event_type_header) or _field(
            payload, cfg.event_type_field
        )
        event = WebhookEvent(
            event_type=event_type or "",
            external_id=external_id,
            payload=payload,
            raw_body=None if payload is not None else raw_body,
        )
        return event

    def webhook_replay_content(
        self, headers: Mapping[str, str], raw_body: bytes, event: WebhookEvent
    ) -> bytes | None:
        """The signed content (``<timestamp><separator><body>`` with a timestamp header),
        unless the id is a field of the signed body."""
        cfg = self.cfg
        if cfg.event_id_field and not cfg.event_id_header and event.external_id:
            return None
        if cfg.timestamp_header:
            stamp = headers.get(cfg.timestamp_header) or ""
            return stamp.encode() + cfg.timestamp_separator.encode() + raw_body
        return raw_body


def _json(raw_body: bytes) -> Any:
    try:
        return json.loads(raw_body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _header(headers: Mapping[str, str], name: str | None) -> str | None:
    value = headers.get(name) if name else None
    return value or None


def _field(payload: Any, path: str | None) -> str | None:
    """The string or integer at a dotted path of a JSON object, else ``None``."""
    if not path:
        return None
    value = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, bool):
        return None
    if isinstance(value, str | int):
        return str(value) or None
    return None

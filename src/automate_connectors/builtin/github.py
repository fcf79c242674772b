"""GitHub webhooks: ``X-Hub-Signature-256`` over the raw body, deduplicated on the delivery id.

Configure it with no code::

    AUTOMATE = {"CONNECTORS": {"github": {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]}}}

and point the repository's webhook at ``https://<host>/webhooks/github/`` with that secret.
The event type is the ``X-GitHub-Event`` header (``push``, ``issues``...); the external id is
``X-GitHub-Delivery``, which GitHub keeps when a delivery is redelivered, so a redelivery is
not stored twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict

from automate_connectors.base import Connector, TriggerSpec, WebhookEvent
from automate_connectors.verification import verify_github


class GitHubConfig(BaseModel):
    """GitHub needs no settings besides its webhook secrets; unknown keys are typos."""

    model_config = ConfigDict(extra="forbid")


class GitHubConnector(Connector):
    """Receives GitHub repository, organisation and app webhooks."""

    key = "github"
    display_name = "GitHub"

    event_id_header = "X-GitHub-Delivery"
    event_type_header = "X-GitHub-Event"
    webhook_headers = (
        "X-GitHub-Hook-ID",
        "X-GitHub-Hook-Installation-Target-Type",
        "X-GitHub-Hook-Installation-Target-ID",
    )

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return GitHubConfig

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [
            TriggerSpec(
                name="webhook",
                verification_method="hmac-sha256",
                description="Any GitHub event; its type is the X-GitHub-Event header.",
            )
        ]

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        return verify_github(self.secret, raw_body, headers.get("X-Hub-Signature-256"))

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        """Read the JSON body, or the ``payload`` field of a form-encoded delivery.

        Only the headers name the event: GitHub payloads have no top-level event id, and an
        ``id`` field in them belongs to some object (a hook, a check run), not the delivery.
        """
        payload = _github_payload(raw_body)
        event = WebhookEvent(
            event_type=headers.get("X-GitHub-Event") or "",
            external_id=headers.get("X-GitHub-Delivery") or None,
            payload=payload,
            raw_body=None if payload is not None else raw_body,
        )
        return event


def _github_payload(raw_body: bytes) -> Any:
    """The JSON payload; webhooks set to ``application/x-www-form-urlencoded`` wrap it."""
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        form = parse_qs(text, max_num_fields=100)
        return json.loads(form["payload"][0])
    except (ValueError, KeyError, IndexError, RecursionError):
        return None

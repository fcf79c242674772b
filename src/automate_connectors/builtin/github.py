"""GitHub: issues and comments through the REST API; webhooks signed with ``X-Hub-Signature-256``.

Actions (``create_issue``, ``create_comment`` on an issue or a pull request) call the REST
API with a token given as a ``secret://`` reference; ``base_url`` points at GitHub
Enterprise Server (``https://HOST/api/v3``). GitHub signals its rate limits with
``x-ratelimit-remaining: 0`` and ``x-ratelimit-reset`` (primary) or ``Retry-After``
(secondary) on a 403 or 429: both become RATE_LIMITED with ``details["retry_after"]``,
while a plain 403 stays PERMISSION_DENIED.

Webhooks are deduplicated on the delivery id. Configure them with no code::

    AUTOMATE = {"CONNECTORS": {"github": {"secrets": ["secret://GITHUB_WEBHOOK_SECRET"]}}}

and point the repository's webhook at ``https://<host>/webhooks/github/`` with that secret.
The event type is the ``X-GitHub-Event`` header (``push``, ``issues``...); the external id is
``X-GitHub-Delivery``, which GitHub keeps when a delivery is redelivered, so a redelivery is
not stored twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from automate_connectors.base import (
    ActionSpec,
    TriggerSpec,
    WebhookEvent,
)
from automate_connectors.builtin import _api
from automate_connectors.verification import verify_github
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

GITHUB_API = "https://api.github.com"
API_VERSION = "2022-11-28"
#: "owner/name"; "." and ".." are refused in code (JSON Schema patterns have no lookahead
#: that every generator understands).
REPOSITORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$"
_REPOSITORY = {"type": "string", "pattern": REPOSITORY_PATTERN}
_NUMBER = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}


class GitHubConfig(BaseModel):
    """Webhook-only use needs no settings (the secrets live on the profile).

    For actions: ``token`` (a ``secret://`` reference to a fine-grained or classic token,
    or an app installation token), ``repository`` (default ``owner/name``), ``base_url``
    (GitHub Enterprise Server: ``https://HOST/api/v3``), ``rate_limit`` (e.g.
    ``"60/min"``, enforced before each call). Unknown keys are typos.
    """

    model_config = ConfigDict(extra="forbid")

    token: str | None = None
    repository: str | None = Field(default=None, pattern=REPOSITORY_PATTERN)
    base_url: str = GITHUB_API
    rate_limit: str | None = None
    timeout: float = Field(default=30.0, gt=0, le=300)

    _token = field_validator("token", mode="before")(_api.check_secret_reference)
    _rate = field_validator("rate_limit")(_api.check_rate)
    _base = field_validator("base_url")(_api.check_service_url("https://github.example.com/api/v3"))


class GitHubConnector(_api.ApiConnector):
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

    cfg: GitHubConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return GitHubConfig

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        strings = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 100}
        return [
            ActionSpec(
                name="create_issue",
                description="Open an issue; returns its id, number and browser URL.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "repository": _REPOSITORY,
                        "title": {"type": "string", "minLength": 1, "maxLength": 256},
                        "body": {"type": "string", "maxLength": 65536},
                        "labels": strings,
                        "assignees": strings,
                        "milestone": _NUMBER,
                    },
                    "required": ["title"],
                    "additionalProperties": False,
                },
                output_schema=_output(),
                idempotent=False,
            ),
            ActionSpec(
                name="create_comment",
                description="Comment on an issue or a pull request (they share numbers).",
                input_schema={
                    "type": "object",
                    "properties": {
                        "repository": _REPOSITORY,
                        "issue_number": _NUMBER,
                        "body": {"type": "string", "minLength": 1, "maxLength": 65536},
                    },
                    "required": ["issue_number", "body"],
                    "additionalProperties": False,
                },
                output_schema=_output(),
                # Repeating it would post the comment twice.
                idempotent=False,
            ),
        ]

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [
            TriggerSpec(
                name="webhook",
                verification_method="hmac-sha256",
                description="Any GitHub event; its type is the X-GitHub-Event header.",
            )
        ]

    # -- Actions -----------------------------------------------------------------------

    def execute_action(self, action: str, input_data: dict[str, Any]) -> dict[str, Any]:
        repo = self._repository(input_data)
        if action == "create_issue":
            payload = {k: v for k, v in input_data.items() if k != "repository"}
            body = self._request("POST", f"/repos/{repo}/issues", payload)
            return {**_created(body), "number": _number(body)}
        number = input_data["issue_number"]
        body = self._request(
            "POST", f"/repos/{repo}/issues/{number}/comments", {"body": input_data["body"]}
        )
        return {**_created(body), "issue_number": number}

    def _repository(self, data: dict[str, Any]) -> str:
        repo = data.get("repository") or self.cfg.repository
        if not repo:
            raise invalid_argument(
                None,
                "give repository ('owner/name') in the input or the connector config",
                provider=self.key,
            )
        owner, name = repo.split("/", 1)
        if name in {".", ".."}:
            raise invalid_argument(None, f"{repo!r} is not a repository name", provider=self.key)
        return f"{quote(owner, safe='')}/{quote(name, safe='')}"

    def _request(self, method: str, path: str, payload: dict[str, Any]) -> Any:
        response = self.send(method, path, json=payload)
        return _api.json_body(response, provider=self.key)

    def client_credentials(self) -> tuple[dict[str, str], None]:
        if not self.cfg.token:
            raise AutomateError(
                ErrorCodes.CONFIGURATION,
                "github actions need token (a secret://NAME reference) in the connector config",
                provider=self.key,
            )
        token = self.ctx.resolve_secret(self.cfg.token)
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        return headers, None

    def rate_scope(self) -> tuple[str | None, ...]:
        return self.cfg.base_url, self.cfg.token

    def normalize_error(self, exc: Exception) -> Exception:
        error = _api.service_error(
            exc, provider=self.key, messages=_github_messages, retry_after=_rate_limit_wait
        )
        if "retry_after" in error.details:  # a 403 that is a rate limit, not a refusal
            error.code = ErrorCodes.RATE_LIMITED
            error.retryable = True
        return error

    # -- Webhooks ------------------------------------------------------------------------

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


def github_retry_after(headers: Any, *, now: float) -> int | None:
    """Seconds to wait when GitHub's headers say a rate limit was hit; None otherwise.

    Secondary limits send ``Retry-After``; the primary limit sends
    ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset`` (epoch seconds).
    """
    retry_after = _api.retry_after_seconds(headers)
    if retry_after is not None:
        return retry_after
    if headers.get("x-ratelimit-remaining") == "0":
        reset = headers.get("x-ratelimit-reset", "")
        if reset.isdigit():
            return max(0, int(reset) - int(now))
        return 60  # GitHub's advice when the reset time is unknown
    return None


def _rate_limit_wait(response: httpx.Response) -> int | None:
    if response.status_code not in (403, 429):
        return None
    return github_retry_after(response.headers, now=time.time())


def _github_messages(body: dict[str, Any]) -> list[str]:
    """GitHub's ``message`` and validation ``errors``."""
    parts = [str(body["message"])] if body.get("message") else []
    for item in body.get("errors") or []:
        if isinstance(item, dict):
            parts.append(str(item.get("message") or f"{item.get('field')}: {item.get('code')}"))
    return parts


def _output() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"id": {"type": "string"}, "url": {"type": "string"}},
        "required": ["id", "url"],
    }


def _created(body: Any) -> dict[str, str]:
    if not isinstance(body, dict) or body.get("id") in (None, "") or not body.get("html_url"):
        raise AutomateError(
            ErrorCodes.INTERNAL,
            "unexpected GitHub response: no 'id' and 'html_url'",
            provider="github",
        )
    return {"id": str(body["id"]), "url": str(body["html_url"])}


def _number(body: dict[str, Any]) -> int:
    number = body.get("number")
    if not isinstance(number, int):
        raise AutomateError(
            ErrorCodes.INTERNAL, "unexpected GitHub response: no issue 'number'", provider="github"
        )
    return number


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

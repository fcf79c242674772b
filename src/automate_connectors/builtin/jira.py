"""Jira Cloud: create issues, comment, move issues through their workflow; signed webhooks.

The spec's ``JiraConnector`` example, done fully: descriptions and comments are sent in
Atlassian Document Format (REST API v3 rejects plain strings there), the API token is a
``secret://`` reference resolved only when a request is made, transitions can be named
instead of numbered, and Jira's own error messages reach the :class:`AutomateError`.

Webhooks registered with a secret carry ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the
raw body>``; ``X-Atlassian-Webhook-Identifier`` identifies a delivery across retries.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, field_validator

from automate_connectors.base import (
    ActionSpec,
    TriggerSpec,
    WebhookEvent,
)
from automate_connectors.builtin import _api
from automate_connectors.verification import verify_hmac
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

__all__ = ["JiraConfig", "JiraConnector", "text_to_adf"]

#: An issue key ("PROJ-12") or a numeric issue id.
ISSUE_KEY_PATTERN = r"^(?:[A-Z][A-Z0-9_]*-[1-9][0-9]*|[1-9][0-9]*)$"
_ISSUE_KEY = {"type": "string", "pattern": ISSUE_KEY_PATTERN}


class JiraConfig(BaseModel):
    """``api_token`` should be a ``secret://NAME`` reference; it is resolved per request.

    ``rate_limit`` (e.g. ``"100/min"``) is enforced through RateLimiter before each request.
    """

    url: str = Field(description="Site URL, e.g. https://example.atlassian.net")
    email: str = Field(min_length=3)
    api_token: str = Field(min_length=1)
    project_key: str | None = Field(default=None, description="Default project for new issues")
    timeout: float = Field(default=30.0, gt=0, le=300)
    rate_limit: str | None = None

    _rate = field_validator("rate_limit")(_api.check_rate)
    _url = field_validator("url")(
        _api.check_service_url("https://example.atlassian.net", allow_http=True)
    )


class JiraConnector(_api.ApiConnector):
    """Jira Cloud through REST API v3 with an account email and API token (Basic auth)."""

    key = "jira"
    display_name = "Jira"
    cfg: JiraConfig
    event_id_header = "X-Atlassian-Webhook-Identifier"
    signature_header = "X-Hub-Signature"

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return JiraConfig

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [
            ActionSpec(
                name="create_issue",
                description="Create an issue; returns its id, key and browser URL.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "summary": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": {"type": "string"},
                        "issue_type": {"type": "string", "minLength": 1, "default": "Task"},
                        "project_key": {"type": "string", "pattern": r"^[A-Z][A-Z0-9_]*$"},
                        "labels": {"type": "array", "items": {"type": "string", "minLength": 1}},
                        "priority": {"type": "string", "minLength": 1},
                    },
                    "required": ["summary"],
                    "additionalProperties": False,
                },
                output_schema=_output("id", "key", "url"),
                idempotent=False,
            ),
            ActionSpec(
                name="add_comment",
                description="Add a comment to an issue.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "issue_key": _ISSUE_KEY,
                        "body": {"type": "string", "minLength": 1},
                    },
                    "required": ["issue_key", "body"],
                    "additionalProperties": False,
                },
                output_schema=_output("id", "issue_key"),
                # Repeating it would post the comment twice.
                idempotent=False,
            ),
            ActionSpec(
                name="get_transitions",
                description="The transitions available to an issue in its current status.",
                input_schema={
                    "type": "object",
                    "properties": {"issue_key": _ISSUE_KEY},
                    "required": ["issue_key"],
                    "additionalProperties": False,
                },
                output_schema={
                    "type": "object",
                    "properties": {"transitions": {"type": "array"}},
                    "required": ["transitions"],
                },
                idempotent=True,
            ),
            ActionSpec(
                name="transition_issue",
                description="Move an issue through a transition given by id or by name.",
                input_schema={
                    "type": "object",
                    "properties": {
                        "issue_key": _ISSUE_KEY,
                        "transition": {"type": "string", "minLength": 1},
                        "comment": {"type": "string", "minLength": 1},
                    },
                    "required": ["issue_key", "transition"],
                    "additionalProperties": False,
                },
                output_schema=_output("issue_key", "transition_id"),
                # From the new status the same transition is usually no longer available.
                idempotent=False,
            ),
        ]

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        events = {
            "issue_created": "jira:issue_created",
            "issue_updated": "jira:issue_updated",
            "issue_deleted": "jira:issue_deleted",
            "comment_created": "comment_created",
        }
        return [
            TriggerSpec(name=name, verification_method="hmac-sha256", event_types=[event])
            for name, event in events.items()
        ]

    # -- Actions -----------------------------------------------------------------------

    def execute_action(self, action: str, input_data: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_action_{action}")
        return handler(input_data)

    def _action_create_issue(self, data: dict[str, Any]) -> dict[str, Any]:
        project = data.get("project_key") or self.cfg.project_key
        if not project:
            raise invalid_argument(
                None,
                "create_issue needs a project: give project_key in the input or the config",
                provider=self.key,
            )
        fields: dict[str, Any] = {
            "project": {"key": project},
            "summary": data["summary"],
            "issuetype": {"name": data.get("issue_type", "Task")},
        }
        if data.get("description"):
            fields["description"] = text_to_adf(data["description"])
        if data.get("labels"):
            fields["labels"] = list(data["labels"])
        if data.get("priority"):
            fields["priority"] = {"name": data["priority"]}
        body = self._request("POST", "/rest/api/3/issue", json={"fields": fields})
        key = _field(body, "key")
        return {"id": str(_field(body, "id")), "key": key, "url": f"{self.cfg.url}/browse/{key}"}

    def _action_add_comment(self, data: dict[str, Any]) -> dict[str, Any]:
        issue = data["issue_key"]
        body = self._request(
            "POST", f"{_issue_path(issue)}/comment", json={"body": text_to_adf(data["body"])}
        )
        return {"id": str(_field(body, "id")), "issue_key": issue}

    def _action_get_transitions(self, data: dict[str, Any]) -> dict[str, Any]:
        return {"transitions": self._transitions(data["issue_key"])}

    def _action_transition_issue(self, data: dict[str, Any]) -> dict[str, Any]:
        issue, wanted = data["issue_key"], data["transition"].strip()
        name = None
        transition_id = wanted
        if not wanted.isdigit():
            available = self._transitions(issue)
            match = next((t for t in available if t["name"].lower() == wanted.lower()), None)
            if match is None:
                names = ", ".join(repr(t["name"]) for t in available) or "none"
                raise invalid_argument(
                    None,
                    f"issue {issue} has no transition named {wanted!r} (available: {names})",
                    provider=self.key,
                    issue_key=issue,
                    transition=wanted,
                )
            transition_id, name = match["id"], match["name"]
        payload: dict[str, Any] = {"transition": {"id": transition_id}}
        if data.get("comment"):
            payload["update"] = {"comment": [{"add": {"body": text_to_adf(data["comment"])}}]}
        self._request("POST", f"{_issue_path(issue)}/transitions", json=payload)
        return {"issue_key": issue, "transition_id": transition_id, "transition_name": name}

    def _transitions(self, issue: str) -> list[dict[str, Any]]:
        body = self._request("GET", f"{_issue_path(issue)}/transitions")
        transitions = _field(body, "transitions")
        if not isinstance(transitions, list):
            raise _unexpected("transitions is not a list")
        return [
            {
                "id": str(_field(t, "id")),
                "name": str(_field(t, "name")),
                "to": str((t.get("to") or {}).get("name", "")),
            }
            for t in transitions
        ]

    # -- HTTP ----------------------------------------------------------------------------

    def client_credentials(self) -> tuple[dict[str, str], httpx.Auth]:
        token = self.ctx.resolve_secret(self.cfg.api_token)
        return {"Accept": "application/json"}, httpx.BasicAuth(self.cfg.email, token)

    def rate_scope(self) -> tuple[str | None, ...]:
        return self.cfg.url, self.cfg.email

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.send(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise _unexpected(f"{method} {path} answered with a body that is not JSON") from None

    def normalize_error(self, exc: Exception) -> Exception:
        return _api.service_error(exc, provider=self.key, messages=_jira_messages)

    # -- Webhooks ------------------------------------------------------------------------

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        return verify_hmac(
            self.secret, raw_body, headers.get(self.signature_header), prefix="sha256="
        )

    def parse_webhook(self, headers: Any, raw_body: bytes) -> WebhookEvent:
        event = super().parse_webhook(headers, raw_body)
        payload = event.payload if isinstance(event.payload, dict) else {}
        kind = payload.get("webhookEvent")
        if isinstance(kind, str) and kind:
            return WebhookEvent(kind, event.external_id, event.payload, event.raw_body)
        return event


def text_to_adf(text: str) -> dict[str, Any]:
    """Plain text as an Atlassian Document: one paragraph per block, line breaks kept."""
    paragraphs = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        content: list[dict[str, Any]] = []
        for index, line in enumerate(block.split("\n")):
            if index:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        if any(node["type"] == "text" for node in content):
            paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def _output(*names: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": "string"} for name in names},
        "required": list(names),
    }


def _issue_path(issue: str) -> str:
    return f"/rest/api/3/issue/{quote(issue, safe='')}"


def _field(body: Any, name: str) -> Any:
    if not isinstance(body, dict) or body.get(name) in (None, ""):
        raise _unexpected(f"the response has no {name!r}")
    return body[name]


def _unexpected(what: str) -> AutomateError:
    return AutomateError(ErrorCodes.INTERNAL, f"unexpected Jira response: {what}", provider="jira")


def _jira_messages(body: dict[str, Any]) -> list[str]:
    """Jira's ``errorMessages`` and field ``errors``."""
    parts = [str(m) for m in body.get("errorMessages") or [] if m]
    errors = body.get("errors")
    if isinstance(errors, dict):
        parts += [f"{field}: {message}" for field, message in errors.items()]
    return parts

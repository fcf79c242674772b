"""The spec's client connectors, copied from integration-patterns.md unchanged.

Only the imports the snippets take for granted (hmac, hashlib) are added. This module is
autodiscovered: an installed app's ``connectors`` module is imported in ``ready()``.
"""

import hashlib
import hmac

from pydantic import BaseModel

from automate_connectors.base import ActionSpec, CapabilitySpec, Connector, TriggerSpec
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes


class MyWebhookConnector(Connector):
    key = "my_service"

    def verify_webhook(self, headers: dict, raw_body: bytes) -> bool:
        """Custom signature verification."""
        signature = headers.get("X-Signature")
        expected = hmac.new(self.secret.encode(), raw_body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(signature, expected)


class JiraConfig(BaseModel):
    url: str
    email: str
    api_token: str
    project_key: str = "PROJ"


class JiraConnector(Connector):
    """Jira integration connector."""

    key = "jira"
    display_name = "Jira"

    def __init__(self, config: dict, *, ctx: ProviderContext):
        self.cfg = JiraConfig(**config)
        self.ctx = ctx
        self.client = self._create_client()

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return JiraConfig

    @classmethod
    def capabilities(cls) -> list[CapabilitySpec]:
        return [CapabilitySpec(name="connector", modalities={"action", "trigger"})]

    @classmethod
    def actions(cls) -> list[ActionSpec]:
        return [
            ActionSpec(
                name="create_issue",
                input_schema={
                    "type": "object",
                    "properties": {
                        "summary": {"type": "string"},
                        "description": {"type": "string"},
                        "issue_type": {"type": "string", "default": "Task"},
                    },
                    "required": ["summary"],
                },
                idempotent=False,
            ),
            ActionSpec(
                name="add_comment",
                input_schema={
                    "type": "object",
                    "properties": {
                        "issue_key": {"type": "string"},
                        "body": {"type": "string"},
                    },
                    "required": ["issue_key", "body"],
                },
                idempotent=True,
            ),
        ]

    @classmethod
    def triggers(cls) -> list[TriggerSpec]:
        return [
            TriggerSpec(name="issue_created", verification_method="hmac"),
            TriggerSpec(name="issue_updated", verification_method="hmac"),
        ]

    def execute_action(self, action: str, input_data: dict) -> dict:
        if action == "create_issue":
            return self._create_issue(input_data)
        elif action == "add_comment":
            return self._add_comment(input_data)
        raise AutomateError(ErrorCodes.INVALID_ARGUMENT, f"Unknown: {action}")

    def _create_issue(self, data: dict) -> dict:
        response = self.client.post(
            "/rest/api/3/issue",
            json={
                "fields": {
                    "project": {"key": self.cfg.project_key},
                    "summary": data["summary"],
                    "description": data.get("description"),
                    "issuetype": {"name": data.get("issue_type", "Task")},
                }
            },
        )
        return {"key": response.json()["key"], "id": response.json()["id"]}

    def normalize_error(self, exc: Exception) -> Exception:
        return AutomateError(ErrorCodes.INTERNAL, str(exc), provider=self.key)

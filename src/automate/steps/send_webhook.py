"""``send_webhook``: send an outgoing webhook from a workflow, like ``send_webhook()``.

    {"name": "Tell the customer", "type": "send_webhook", "config": {
        "event_type": "invoice.paid",
        "payload": {"invoice": "{{ event.payload.id }}"},
        "owner": "{{ event.payload.account }}"}}

Without ``key`` the step uses one made of the run and the step name, so a step executed
again after a crash sends nothing twice: the step is idempotent.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from automate.outgoing.api import send_webhook
from automate.steps.base import StepContext, StepExecutor, StrictConfig


class SendWebhookConfig(StrictConfig):
    event_type: str = Field(min_length=1, max_length=200)
    payload: Any = None
    owner: str | None = None
    key: str | None = Field(default=None, max_length=255)


class SendWebhookStep(StepExecutor[SendWebhookConfig]):
    key = "send_webhook"
    display_name = "Send webhook"
    config_model = SendWebhookConfig
    idempotent = True  # through the idempotency key

    def execute(self, config: SendWebhookConfig, ctx: StepContext) -> dict[str, Any]:
        key = config.key or f"workflow-run:{ctx.run_id}:{ctx.step_name}"
        message = send_webhook(config.event_type, config.payload, owner=config.owner, key=key)
        return {
            "message_id": message.uid,
            "event_type": message.event_type,
            "deliveries": getattr(message, "fanned_out", 0),
        }

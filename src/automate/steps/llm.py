"""``llm``: one chat call through an LLM profile, its usage recorded.

    {"name": "Summarise", "type": "llm", "config": {
        "profile": "assistant",                          # an automate_llm LLMProfile key
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "{{ event.payload.text }}"}],
        "response_schema": {"type": "object", ...},      # optional: structured output
        "max_tokens": 200}}

The output is the call's result (content, tool calls, usage, model, finish reason), the
parsed structured output when a schema is given, and the id of its ``LLMUsage`` row. Needs
``automate_llm`` in ``INSTALLED_APPS``; the engine's retry policy is the only retry layer.
The step registry imports this module only when that app is installed
(:data:`automate.steps.registry.OPTIONAL_STEPS`), after the models are loaded.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from automate.steps.base import StepContext, StepExecutor, StrictConfig
from automate.templating import is_template
from automate_core.providers.errors import invalid_argument
from automate_llm.calls import run_chat
from automate_llm.models import LLMProfile


class Message(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: Any


class LLMStepConfig(StrictConfig):
    profile: str = Field(min_length=1)
    messages: list[Message] | str = Field(min_length=1)
    response_schema: dict[str, Any] | None = None
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)


class LLMStep(StepExecutor[LLMStepConfig]):
    key = "llm"
    display_name = "LLM call"
    config_model = LLMStepConfig
    # A chat call changes nothing outside: repeating it after a crash is safe.
    idempotent = True

    @classmethod
    def check(cls, config: LLMStepConfig, *, where: str = "config") -> None:
        if (
            not is_template(config.profile)
            and not LLMProfile.objects.filter(key=config.profile).exists()
        ):
            raise invalid_argument(
                f"{where}.profile", f"{where}.profile: no LLM profile {config.profile!r}"
            )

    def execute(self, config: LLMStepConfig, ctx: StepContext) -> dict[str, Any]:
        if isinstance(config.messages, str):
            raise invalid_argument(
                "config.messages",
                "config.messages must render to a list of {role, content} objects",
            )
        params = {
            name: value
            for name in ("model", "max_tokens", "temperature")
            if (value := getattr(config, name)) is not None
        }
        call = run_chat(
            config.profile,
            [m.model_dump() for m in config.messages],
            response_schema=config.response_schema,
            trace_id=ctx.trace_id,
            run_id=ctx.run_id,
            step_name=ctx.step_name,
            timeout=ctx.timeout,
            **params,
        )
        return call.as_dict()

"""The ``offline`` provider: a deterministic stand-in for demos and tests. Not a model.

It never opens a socket and always gives the same answer to the same input:

* plain chat: ``reply`` from its config, else ``"echo: <last user message>"``;
* with a ``response_schema``: ``json_reply`` from its config, else a JSON value built from
  the schema (first enum value, ``"offline"`` for strings, 0, false, one array item...);
* with ``tools`` and ``tool_call`` naming one of them: a call to that tool, with
  arguments built from its parameter schema the same way.

Usage is counted with the documented estimate of :mod:`automate_llm.tokens`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, Field

from automate_llm.providers.base import BaseLLMProvider, ChatChunk, ChatResult, ToolCall, Usage
from automate_llm.tokens import estimate_tokens


class OfflineConfig(BaseModel):
    model_config = {"extra": "forbid"}

    model: str = "offline-echo"
    reply: str | None = Field(default=None, description="A fixed answer instead of the echo.")
    json_reply: Any = Field(default=None, description="The answer when a schema is asked for.")
    tool_call: str | None = Field(default=None, description="Call this tool when offered.")


class OfflineEchoProvider(BaseLLMProvider):
    """Echoes the last user message; deterministic, no network, no model."""

    key = "offline"
    display_name = "Offline echo (deterministic, for demos and tests)"

    cfg: OfflineConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return OfflineConfig

    def complete(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        calls: tuple[ToolCall, ...] = ()
        tools = {tool["name"]: tool for tool in kwargs.get("tools") or []}
        if self.cfg.tool_call and self.cfg.tool_call in tools:
            arguments = sample_from_schema(tools[self.cfg.tool_call].get("parameters") or {})
            if not isinstance(arguments, dict):
                arguments = {}
            calls = (
                ToolCall("call_offline_1", self.cfg.tool_call, arguments, json.dumps(arguments)),
            )
            content = ""
        elif kwargs.get("response_schema"):
            value = self.cfg.json_reply
            if value is None:
                value = sample_from_schema(kwargs["response_schema"])
            content = json.dumps(value)
        elif self.cfg.reply is not None:
            content = self.cfg.reply
        else:
            content = f"echo: {_last_user_text(messages)}"
        return ChatResult(
            content=content,
            model=kwargs.get("model") or self.cfg.model,
            usage=Usage(
                input_tokens=sum(estimate_tokens(_as_text(m.get("content"))) for m in messages),
                output_tokens=estimate_tokens(content),
                estimated=True,
            ),
            tool_calls=calls,
            finish_reason="tool_calls" if calls else "stop",
        )

    def stream(self, messages: list[dict], **kwargs: Any) -> Iterator[ChatChunk]:
        """The answer word by word, then a last chunk with usage and the finish reason."""
        result = self.complete(messages, **kwargs)
        words = result.content.split(" ")
        for i, word in enumerate(words):
            if word or len(words) == 1:
                yield ChatChunk(delta=word if i == 0 else f" {word}", model=result.model)
        yield ChatChunk(
            tool_calls=result.tool_calls,
            usage=result.usage,
            finish_reason=result.finish_reason,
            model=result.model,
        )

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)


def sample_from_schema(schema: Any, depth: int = 0) -> Any:
    """A deterministic value that validates against simple JSON Schemas."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for combinator in ("anyOf", "oneOf", "allOf"):
        if schema.get(combinator):
            return sample_from_schema(schema[combinator][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        return {
            name: sample_from_schema(sub, depth + 1)
            for name, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        count = max(int(schema.get("minItems", 1)), 1)
        return [sample_from_schema(schema.get("items") or {}, depth + 1) for _ in range(count)]
    if kind == "string":
        return "offline".ljust(int(schema.get("minLength", 0)), "x")
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return False
    return None


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages):
        if message.get("role", "user") == "user":
            return _as_text(message.get("content"))
    return ""


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)

"""The ``anthropic`` provider: the Messages API through the official ``anthropic`` SDK.

System messages are lifted into the ``system`` parameter, tool calls become ``tool_use``
blocks and tool answers ``tool_result`` blocks. ``count_tokens`` asks the service's
token-counting endpoint (Anthropic publishes no offline tokenizer for its models). The
SDK's own retries are off (see :mod:`automate_llm.retry`).

    {"api_key": "secret://ANTHROPIC_API_KEY", "model": "claude-sonnet-4-5"}
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

from automate_llm.providers._sdk import SDKProvider, malformed_response
from automate_llm.providers.base import ChatChunk, ChatResult, ToolCall, Usage


class AnthropicConfig(BaseModel):
    model_config = {"extra": "forbid"}

    api_key: str = Field(description="A secret:// reference to the API key.")
    model: str = "claude-sonnet-4-5"
    base_url: str | None = None
    timeout: float = Field(default=60.0, gt=0, description="Seconds for one request.")
    #: The Messages API requires a bound on the answer's length.
    max_tokens: int = Field(default=1024, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=1)


class AnthropicProvider(SDKProvider):
    """Claude models through the ``anthropic`` SDK."""

    key = "anthropic"
    #: Where the API key goes when the profile sets no base_url (its implicit grant).
    default_host = "api.anthropic.com"
    display_name = "Anthropic"
    secret_fields = ("api_key",)
    sdk_module = "anthropic"
    sdk_extra = "anthropic"
    sync_client_class = "Anthropic"
    async_client_class = "AsyncAnthropic"

    cfg: AnthropicConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return AnthropicConfig

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as one user message, counted by the service's count API."""
        with self._mapped_errors():
            counted = self.client.messages.count_tokens(
                model=self.cfg.model, messages=[{"role": "user", "content": text}]
            )
        return int(counted.input_tokens)

    # -- Wire format ----------------------------------------------------------------------

    def _create(self, client: Any, params: dict[str, Any]) -> Any:
        return client.messages.create(**params)

    def _stream_reader(self) -> _StreamReader:
        return _StreamReader()

    def _params(self, messages: list[dict], kwargs: dict[str, Any]) -> dict[str, Any]:
        system = [_text(m.get("content")) for m in messages if m.get("role") == "system"]
        params: dict[str, Any] = {
            "model": kwargs.get("model") or self.cfg.model,
            "max_tokens": kwargs.get("max_tokens") or self.cfg.max_tokens,
            "messages": _wire_messages([m for m in messages if m.get("role") != "system"]),
        }
        if system:
            params["system"] = "\n\n".join(system)
        temperature = kwargs.get("temperature", self.cfg.temperature)
        if temperature is not None:
            # In the request body directly: newer SDKs dropped the keyword argument while
            # the API still takes the field for the models that support it.
            params["extra_body"] = {"temperature": temperature}
        if kwargs.get("stop"):
            stop = kwargs["stop"]
            params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
        if kwargs.get("timeout"):
            params["timeout"] = float(kwargs["timeout"])  # this call only (a step's budget)
        if kwargs.get("tools"):
            params["tools"] = [
                {
                    "name": tool["name"],
                    "description": tool.get("description", ""),
                    "input_schema": tool.get("parameters") or {"type": "object"},
                }
                for tool in kwargs["tools"]
            ]
        return params

    def _result(self, message: Any) -> ChatResult:
        if not hasattr(message, "content") or isinstance(message, str | bytes):
            raise malformed_response(self.key, message)
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content or []:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                arguments = block.input if isinstance(block.input, dict) else {}
                calls.append(ToolCall(block.id, block.name, arguments, json.dumps(arguments)))
        usage = message.usage
        return ChatResult(
            content="".join(texts),
            model=message.model or self.cfg.model,
            usage=Usage(
                input_tokens=getattr(usage, "input_tokens", 0) or 0,
                output_tokens=getattr(usage, "output_tokens", 0) or 0,
            ),
            tool_calls=tuple(calls),
            finish_reason=message.stop_reason,
        )


class _StreamReader:
    """Turns Messages API stream events into :class:`ChatChunk` s.

    ``message_start`` carries the input tokens, ``message_delta`` the stop reason and the
    output tokens; a ``tool_use`` block's input arrives as JSON fragments and is handed out
    whole when the message ends.
    """

    def __init__(self) -> None:
        self.model = ""
        self.input_tokens = 0
        self.blocks: dict[int, dict[str, str]] = {}

    def feed(self, event: Any) -> ChatChunk | None:
        kind = event.type
        if kind == "message_start":
            self.model = event.message.model or ""
            self.input_tokens = getattr(event.message.usage, "input_tokens", 0) or 0
        elif kind == "content_block_start" and event.content_block.type == "tool_use":
            block = event.content_block
            self.blocks[event.index] = {"id": block.id, "name": block.name, "json": ""}
        elif kind == "content_block_delta":
            delta = event.delta
            if delta.type == "text_delta":
                return ChatChunk(delta=delta.text, model=self.model)
            if delta.type == "input_json_delta" and event.index in self.blocks:
                self.blocks[event.index]["json"] += delta.partial_json
        elif kind == "message_delta":
            calls = tuple(
                ToolCall.from_json(b["id"], b["name"], b["json"] or "{}")
                for _, b in sorted(self.blocks.items())
            )
            return ChatChunk(
                tool_calls=calls,
                usage=Usage(
                    input_tokens=self.input_tokens,
                    output_tokens=getattr(event.usage, "output_tokens", 0) or 0,
                ),
                finish_reason=event.delta.stop_reason,
                model=self.model,
            )
        return None


def _wire_messages(messages: list[dict]) -> list[dict[str, Any]]:
    """Our neutral messages to Messages API turns (tool answers are user turns)."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role", "user")
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": _text(message.get("content")),
            }
            if wire and wire[-1]["role"] == "user" and isinstance(wire[-1]["content"], list):
                wire[-1]["content"].append(block)
            else:
                wire.append({"role": "user", "content": [block]})
            continue
        calls = message.get("tool_calls")
        if role == "assistant" and calls:
            blocks: list[dict[str, Any]] = []
            if message.get("content"):
                blocks.append({"type": "text", "text": _text(message["content"])})
            blocks.extend(
                {"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]}
                for c in calls
            )
            wire.append({"role": "assistant", "content": blocks})
            continue
        wire.append({"role": role, "content": message.get("content")})
    return wire


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

"""The ``openai`` provider: OpenAI and any OpenAI-compatible endpoint, via the official SDK.

``base_url`` points it at any server speaking the Chat Completions wire format (vLLM,
Ollama, LiteLLM, Azure's v1 endpoint...). The SDK's own retries are off (see
:mod:`automate_llm.retry`); errors are mapped by :mod:`automate_llm.providers._sdk`.

    {"api_key": "secret://OPENAI_API_KEY", "model": "gpt-4o-mini"}
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from automate_llm import tokens
from automate_llm.providers._sdk import SDKProvider, malformed_response
from automate_llm.providers.base import ChatChunk, ChatResult, ToolCall, Usage


class OpenAIConfig(BaseModel):
    model_config = {"extra": "forbid"}

    api_key: str = Field(description="A secret:// reference to the API key.")
    model: str = "gpt-4o-mini"
    base_url: str | None = Field(default=None, description="For OpenAI-compatible endpoints.")
    organization: str | None = None
    timeout: float = Field(default=60.0, gt=0, description="Seconds for one request.")
    max_tokens: int | None = Field(default=None, gt=0)
    #: Newer OpenAI models want ``max_completion_tokens``; most compatible servers ``max_tokens``.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    temperature: float | None = Field(default=None, ge=0, le=2)
    encoding: str | None = Field(
        default=None, description="tiktoken encoding for count_tokens (default: by model)."
    )


class OpenAIProvider(SDKProvider):
    """Chat Completions through the ``openai`` SDK."""

    key = "openai"
    #: Where the API key goes when the profile sets no base_url (its implicit grant).
    default_host = "api.openai.com"
    display_name = "OpenAI (or any OpenAI-compatible endpoint)"
    secret_fields = ("api_key",)
    sdk_module = "openai"
    sdk_extra = "openai"
    sync_client_class = "OpenAI"
    async_client_class = "AsyncOpenAI"

    cfg: OpenAIConfig

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return OpenAIConfig

    def _extra_client_kwargs(self) -> dict[str, Any]:
        return {"organization": self.cfg.organization}

    def count_tokens(self, text: str) -> int:
        """tiktoken for the model's encoding when it is on disk, else the documented estimate."""
        return tokens.count_tokens(text, model=self.cfg.model, encoding=self.cfg.encoding)

    # -- Wire format ----------------------------------------------------------------------

    def _create(self, client: Any, params: dict[str, Any]) -> Any:
        return client.chat.completions.create(**params)

    def _stream_reader(self) -> _ToolCallAssembler:
        return _ToolCallAssembler()

    def _stream_params(self, messages: list[dict], kwargs: dict[str, Any]) -> dict[str, Any]:
        return self._params(messages, kwargs, stream=True)

    def _params(
        self, messages: list[dict], kwargs: dict[str, Any], *, stream: bool = False
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": kwargs.get("model") or self.cfg.model,
            "messages": [_wire_message(m) for m in messages],
        }
        max_tokens = kwargs.get("max_tokens") or self.cfg.max_tokens
        if max_tokens:
            params[self.cfg.max_tokens_field] = max_tokens
        temperature = kwargs.get("temperature", self.cfg.temperature)
        if temperature is not None:
            params["temperature"] = temperature
        if kwargs.get("stop"):
            params["stop"] = kwargs["stop"]
        if kwargs.get("timeout"):
            params["timeout"] = float(kwargs["timeout"])  # this call only (a step's budget)
        tools = kwargs.get("tools")
        if tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool["name"],
                        "description": tool.get("description", ""),
                        "parameters": tool.get("parameters") or {"type": "object"},
                    },
                }
                for tool in tools
            ]
        if kwargs.get("response_schema"):
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": kwargs["response_schema"]},
            }
        if stream:
            params["stream"] = True
            params["stream_options"] = {"include_usage": True}
        return params

    def _result(self, response: Any) -> ChatResult:
        if not hasattr(response, "choices"):
            raise malformed_response(self.key, response)
        choice = response.choices[0] if response.choices else None
        message = choice.message if choice is not None else None
        calls = tuple(
            ToolCall.from_json(call.id, call.function.name, call.function.arguments or "")
            for call in (getattr(message, "tool_calls", None) or [])
            if getattr(call, "function", None) is not None
        )
        usage = response.usage
        return ChatResult(
            content=(message.content if message is not None else None) or "",
            model=response.model or self.cfg.model,
            usage=Usage(
                input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                output_tokens=getattr(usage, "completion_tokens", 0) or 0,
            ),
            tool_calls=calls,
            finish_reason=choice.finish_reason if choice is not None else None,
        )


class _ToolCallAssembler:
    """Turns streamed Chat Completions chunks into :class:`ChatChunk` s.

    Tool calls arrive in pieces keyed by ``index`` (id and name first, arguments in
    fragments); they are handed out whole on the chunk that carries the finish reason.
    """

    def __init__(self) -> None:
        self.calls: dict[int, dict[str, str]] = {}
        self.model = ""

    def feed(self, event: Any) -> ChatChunk | None:
        self.model = getattr(event, "model", "") or self.model
        usage = getattr(event, "usage", None)
        if not event.choices:
            if usage is None:
                return None
            return ChatChunk(
                usage=Usage(
                    input_tokens=usage.prompt_tokens or 0,
                    output_tokens=usage.completion_tokens or 0,
                ),
                model=self.model,
            )
        choice = event.choices[0]
        delta = choice.delta
        for part in getattr(delta, "tool_calls", None) or []:
            slot = self.calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
            if part.id:
                slot["id"] = part.id
            if part.function is not None:
                slot["name"] += part.function.name or ""
                slot["arguments"] += part.function.arguments or ""
        calls: tuple[ToolCall, ...] = ()
        if choice.finish_reason and self.calls:
            calls = tuple(
                ToolCall.from_json(c["id"], c["name"], c["arguments"])
                for _, c in sorted(self.calls.items())
            )
        text = getattr(delta, "content", None) or ""
        if not text and not calls and not choice.finish_reason:
            return None
        return ChatChunk(
            delta=text, tool_calls=calls, finish_reason=choice.finish_reason, model=self.model
        )


def _wire_message(message: dict) -> dict[str, Any]:
    """Our neutral message shape to the Chat Completions one."""
    role = message.get("role", "user")
    if role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.get("tool_call_id", ""),
            "content": _text(message.get("content")),
        }
    wire: dict[str, Any] = {"role": role, "content": message.get("content")}
    calls = message.get("tool_calls")
    if role == "assistant" and calls:
        wire["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
            }
            for call in calls
        ]
    return wire


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)

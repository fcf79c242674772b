"""``BaseLLMProvider``: what an LLM provider is, and the results it returns.

The spec's surface is small: ``chat(messages, **kwargs) -> str``, ``async achat(...)`` and
``count_tokens(text)``. A workflow needs more than a string, so providers also have
:meth:`BaseLLMProvider.complete` returning a :class:`ChatResult` (content, tool calls,
usage, model, finish reason) and :meth:`BaseLLMProvider.stream` yielding
:class:`ChatChunk` s with the usage on the last one.

A provider implements whichever side it likes and the base derives the other:

* a client provider that only writes ``chat`` (like the spec's ``MyLLMProvider``) gets
  ``complete`` for free, with the usage *estimated* by its own ``count_tokens``
  (``Usage.estimated`` says so);
* the built-ins implement ``complete``/``acomplete``/``stream``/``astream`` natively and
  inherit ``chat``/``achat`` as ``complete(...).content``.

Registration checks that at least one of ``chat`` and ``complete`` is implemented, so the
two defaults can never call each other forever.

Messages use the common chat shape: ``{"role": "system"|"user"|"assistant"|"tool",
"content": str}``; an assistant message may carry ``tool_calls`` (as returned in
:attr:`ChatResult.tool_calls`, see :meth:`ToolCall.as_message_part`) and a ``tool``
message answers one with ``tool_call_id``. Tools are declared provider-neutrally as
``{"name": ..., "description": ..., "parameters": <JSON Schema>}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from automate_core.providers.base import BaseProvider, ProviderContext
from automate_llm import tokens

__all__ = [
    "BaseLLMProvider",
    "ChatChunk",
    "ChatResult",
    "ToolCall",
    "Usage",
]


@dataclass(frozen=True)
class Usage:
    """Tokens read and written by one call; ``estimated`` when not reported by the service."""

    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "estimated": self.estimated,
        }


@dataclass(frozen=True)
class ToolCall:
    """A function call the model asked for; ``arguments`` parsed, ``arguments_json`` raw."""

    id: str
    name: str
    arguments: dict[str, Any]
    arguments_json: str = ""

    @classmethod
    def from_json(cls, id: str, name: str, arguments_json: str) -> ToolCall:
        """Parse the arguments as sent; a model's malformed JSON is kept raw, not raised."""
        try:
            parsed = json.loads(arguments_json) if arguments_json else {}
        except ValueError:
            parsed = {}
        return cls(
            id=id,
            name=name,
            arguments=parsed if isinstance(parsed, dict) else {"value": parsed},
            arguments_json=arguments_json,
        )

    def as_message_part(self) -> dict[str, Any]:
        """The provider-neutral form used in an assistant message's ``tool_calls``."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@dataclass(frozen=True)
class ChatResult:
    """One completed chat call."""

    content: str
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored as a step's output."""
        return {
            "content": self.content,
            "model": self.model,
            "usage": self.usage.as_dict(),
            "tool_calls": [call.as_message_part() for call in self.tool_calls],
            "finish_reason": self.finish_reason,
        }


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed answer; the last chunk carries ``usage`` and ``finish_reason``."""

    delta: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    finish_reason: str | None = None
    model: str = ""


class BaseLLMProvider(BaseProvider):
    """Base class of every LLM provider. Subclass it, set ``key``, and register it.

    ``__init__(config, ctx)`` receives the profile's configuration with its ``secret://``
    references already resolved, and the :class:`ProviderContext` of the call.
    ``secret_fields`` names the configuration fields that must be stored as references.
    """

    key: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    #: Configuration fields holding credentials: stored as ``secret://`` references only.
    secret_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping[str, Any] | None = None, ctx: ProviderContext | None = None):
        schema: type[BaseModel] = self.config_schema()
        self.config = dict(config or {})
        self.cfg = schema.model_validate(self.config)
        self.ctx = ctx or ProviderContext()

    # -- The spec's surface ---------------------------------------------------------------

    def chat(self, messages: list[dict], **kwargs: Any) -> str:
        """The answer's text; built on :meth:`complete` unless a subclass overrides it."""
        return self.complete(messages, **kwargs).content

    async def achat(self, messages: list[dict], **kwargs: Any) -> str:
        """The answer's text, awaited; built on :meth:`acomplete`."""
        return (await self.acomplete(messages, **kwargs)).content

    def count_tokens(self, text: str) -> int:
        """Tokens in ``text``: tiktoken where its encoding is on disk, else an estimate."""
        return tokens.count_tokens(text)

    # -- The richer calls -----------------------------------------------------------------

    def complete(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        """One chat call with usage and tool calls.

        The default wraps a subclass's ``chat`` and estimates the usage with
        ``count_tokens``, because a plain ``chat`` does not report it.
        """
        if not implements_chat(type(self)):
            raise TypeError(f"{type(self).__qualname__} must implement chat() or complete()")
        return self._estimated_result(messages, self.chat(messages, **kwargs), kwargs)

    async def acomplete(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        """Awaitable :meth:`complete`.

        A subclass with its own ``achat`` is awaited directly; otherwise the sync call runs
        in a worker thread so the event loop is never blocked.
        """
        if type(self).achat is not BaseLLMProvider.achat:
            content = await self.achat(messages, **kwargs)
            return self._estimated_result(messages, content, kwargs)
        return await asyncio.to_thread(self.complete, messages, **kwargs)

    def stream(self, messages: list[dict], **kwargs: Any) -> Iterator[ChatChunk]:
        """Chunks of the answer, the last one with usage; by default one chunk."""
        result = self.complete(messages, **kwargs)
        yield _whole_answer(result)

    async def astream(self, messages: list[dict], **kwargs: Any) -> AsyncIterator[ChatChunk]:
        """Async :meth:`stream`; by default one chunk from :meth:`acomplete`."""
        result = await self.acomplete(messages, **kwargs)
        yield _whole_answer(result)

    def _estimated_result(
        self, messages: list[dict], content: Any, kwargs: Mapping[str, Any]
    ) -> ChatResult:
        text = content if isinstance(content, str) else str(content)
        cfg = getattr(self, "cfg", None)
        return ChatResult(
            content=text,
            model=str(kwargs.get("model") or getattr(cfg, "model", "") or ""),
            usage=Usage(
                input_tokens=sum(self.count_tokens(str(m.get("content") or "")) for m in messages),
                output_tokens=self.count_tokens(text),
                estimated=True,
            ),
            finish_reason="stop",
        )

    def close(self) -> None:
        """Release HTTP clients; providers that hold none have nothing to do."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} key={self.key!r}>"


def implements_chat(cls: type[BaseLLMProvider]) -> bool:
    """True when ``cls`` implements ``chat`` or ``complete`` itself (the registration check)."""
    return cls.chat is not BaseLLMProvider.chat or cls.complete is not BaseLLMProvider.complete


def _whole_answer(result: ChatResult) -> ChatChunk:
    """The one chunk that streams a complete answer."""
    return ChatChunk(
        delta=result.content,
        tool_calls=result.tool_calls,
        usage=result.usage,
        finish_reason=result.finish_reason,
        model=result.model,
    )

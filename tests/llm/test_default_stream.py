"""The base class streams a provider that only completes as one chunk holding the answer."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from automate_llm.providers.base import BaseLLMProvider, ChatChunk, ChatResult, ToolCall, Usage

RESULT = ChatResult(
    content="all of it",
    model="m-1",
    usage=Usage(input_tokens=3, output_tokens=2),
    tool_calls=(ToolCall(id="c1", name="lookup", arguments={"q": "x"}),),
    finish_reason="tool_calls",
)
WHOLE = ChatChunk(
    delta="all of it",
    tool_calls=RESULT.tool_calls,
    usage=RESULT.usage,
    finish_reason="tool_calls",
    model="m-1",
)


class _NoConfig(BaseModel):
    pass


class CompleteOnly(BaseLLMProvider):
    key = "complete_only_test"

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return _NoConfig

    def complete(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        return RESULT


def test_default_stream__is_one_chunk_with_the_whole_answer():
    assert list(CompleteOnly().stream([{"role": "user", "content": "hi"}])) == [WHOLE]


def test_default_astream__is_one_chunk_with_the_whole_answer():
    async def collect() -> list[ChatChunk]:
        return [c async for c in CompleteOnly().astream([{"role": "user", "content": "hi"}])]

    assert asyncio.run(collect()) == [WHOLE]

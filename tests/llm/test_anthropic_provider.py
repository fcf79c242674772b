"""The anthropic provider against a local server speaking the Messages API wire format."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_llm.providers.anthropic import AnthropicProvider
from automate_llm.retry import RetryPolicy, acall_with_retry, call_with_retry
from tests.llm.conftest import require_sdk
from tests.llm.servers import Reply, sse


@pytest.fixture(autouse=True)
def _anthropic_sdk():
    require_sdk("anthropic", "anthropic")


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]
MODES = ["sync", "async"]


def message(*blocks, stop="end_turn"):
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test-1",
        "content": list(blocks) or [{"type": "text", "text": "Hello there"}],
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 4},
    }


def error(kind, text):
    return {"type": "error", "error": {"type": kind, "message": text}}


STREAM_EVENTS = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-1",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 8, "output_tokens": 1},
        },
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "toolu_7", "name": "get_weather", "input": {}},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": '{"city": "Li'},
    },
    {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "input_json_delta", "partial_json": 'ma"}'},
    },
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 6},
    },
    {"type": "message_stop"},
]
STREAM = sse(*STREAM_EVENTS, event_names=[e["type"] for e in STREAM_EVENTS])


def make(server, **config) -> AnthropicProvider:
    return AnthropicProvider(
        {"api_key": "sk-ant-test-123", "base_url": server.url, "model": "claude-test"} | config,
        None,
    )


def complete(provider, mode, messages=MESSAGES, **kwargs):
    if mode == "sync":
        return provider.complete(messages, **kwargs)
    return asyncio.run(provider.acomplete(messages, **kwargs))


def warmed(server, mode: str, **config) -> Any:
    """A provider that has answered once, so the SDK's lazily imported modules are loaded:
    a short deadline then times the server's silence, not a first import on a busy machine."""
    provider = make(server, **config)
    server.add(Reply(200, message({"type": "text", "text": "warm"})))
    complete(provider, mode)
    server.requests.clear()
    return provider


def retrying(provider, mode, policy, waits):
    if mode == "sync":
        return call_with_retry(lambda: provider.complete(MESSAGES), policy, sleep=waits.append)

    async def record(seconds):
        waits.append(seconds)

    return asyncio.run(acall_with_retry(lambda: provider.acomplete(MESSAGES), policy, sleep=record))


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__success_lifts_the_system_prompt_and_reads_usage(server, mode):
    server.add(Reply(200, message()))
    result = complete(make(server, temperature=0.5), mode)
    assert result.content == "Hello there"
    assert result.model == "claude-test-1"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (12, 4)
    assert result.finish_reason == "end_turn"
    (request,) = server.requests
    assert request.path == "/v1/messages"
    # Older SDKs send x-api-key, newer ones a bearer token: the resolved key either way.
    assert "sk-ant-test-123" in (
        request.headers.get("x-api-key"),
        request.headers.get("authorization", "").removeprefix("Bearer "),
    )
    body = request.json()
    assert body["system"] == "Be brief."
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert (body["model"], body["max_tokens"], body["temperature"]) == ("claude-test", 1024, 0.5)


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__streaming_yields_text_then_tool_calls_and_usage(server, mode):
    server.add(Reply(200, events=STREAM))
    provider = make(server)
    if mode == "sync":
        chunks = list(provider.stream(MESSAGES, tools=TOOLS))
    else:

        async def collect():
            return [c async for c in provider.astream(MESSAGES, tools=TOOLS)]

        chunks = asyncio.run(collect())
    assert "".join(c.delta for c in chunks) == "Hello"
    last = chunks[-1]
    assert last.finish_reason == "tool_use"
    assert (last.usage.input_tokens, last.usage.output_tokens) == (8, 6)
    assert [(c.id, c.name, c.arguments) for c in last.tool_calls] == [
        ("toolu_7", "get_weather", {"city": "Lima"})
    ]
    assert server.requests[0].json()["stream"] is True


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__tool_use_blocks_become_tool_calls(server, mode):
    server.add(
        Reply(
            200,
            message(
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
                stop="tool_use",
            ),
        )
    )
    result = complete(make(server), mode, tools=TOOLS)
    assert result.content == "Let me check."
    assert result.finish_reason == "tool_use"
    (call,) = result.tool_calls
    assert (call.id, call.name, call.arguments) == ("toolu_1", "get_weather", {"city": "Oslo"})
    assert server.requests[0].json()["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": TOOLS[0]["parameters"],
        }
    ]


def test_anthropic__tool_answers_become_tool_result_blocks(server):
    server.add(Reply(200, message()))
    make(server).complete(
        [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"id": "toolu_1", "name": "get_weather", "arguments": {"city": "X"}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        ]
    )
    sent = server.requests[0].json()["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "X"}},
        ],
    }
    assert sent[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}],
    }


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__429_with_retry_after_then_success(server, mode):
    server.add(
        Reply(429, error("rate_limit_error", "Too many requests"), headers={"retry-after": "4"})
    )
    server.add(Reply(200, message()))
    waits: list[float] = []
    result = retrying(make(server), mode, RetryPolicy(max_attempts=2, base_delay=0.01), waits)
    assert result.content == "Hello there"
    assert waits == [4.0]
    assert len(server.requests) == 2


def test_anthropic__429_alone_is_rate_limited_with_retry_after_and_one_request(server):
    server.add(Reply(429, error("rate_limit_error", "Too many"), headers={"retry-after": "4"}))
    with pytest.raises(AutomateError) as info:
        make(server).complete(MESSAGES)
    assert info.value.code == ErrorCodes.RATE_LIMITED
    assert info.value.retryable is True
    assert info.value.details["retry_after"] == 4.0
    assert len(server.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__a_burst_of_500s_and_529s_is_unavailable_and_retryable(server, mode):
    server.add(
        Reply(500, error("api_error", "Internal")),
        Reply(529, error("overloaded_error", "Overloaded")),
        Reply(500, error("api_error", "Internal")),
    )
    waits: list[float] = []
    with pytest.raises(AutomateError) as info:
        retrying(make(server), mode, RetryPolicy(max_attempts=3, base_delay=0.01), waits)
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable is True
    assert info.value.details["attempts"] == 3
    assert len(waits) == 2
    assert len(server.requests) == 3


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__a_silent_server_is_a_retryable_timeout(server, mode):
    provider = warmed(server, mode, timeout=0.3)
    server.add(Reply(hang=True))
    with pytest.raises(AutomateError) as info:
        complete(provider, mode)
    assert info.value.code == ErrorCodes.TIMEOUT
    assert info.value.retryable is True


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__malformed_json_is_unavailable_and_retryable(server, mode):
    server.add(Reply(200, b'{"id": "msg_1", "content": [{"type": "te'))
    with pytest.raises(AutomateError) as info:
        complete(make(server), mode)
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable is True
    assert info.value.details["reason"] == "malformed_response"


@pytest.mark.parametrize("mode", MODES)
def test_anthropic__401_is_unauthenticated_and_not_retried(server, mode):
    server.add(Reply(401, error("authentication_error", "invalid x-api-key")))
    waits: list[float] = []
    with pytest.raises(AutomateError) as info:
        retrying(make(server), mode, RetryPolicy(max_attempts=3), waits)
    assert info.value.code == ErrorCodes.UNAUTHENTICATED
    assert info.value.retryable is False
    assert "invalid x-api-key" in info.value.message
    assert waits == []
    assert len(server.requests) == 1


def test_anthropic__count_tokens_uses_the_count_api(server):
    server.add(Reply(200, {"input_tokens": 17}))
    assert make(server).count_tokens("How many tokens is this?") == 17
    (request,) = server.requests
    assert request.path == "/v1/messages/count_tokens"
    assert request.json()["messages"] == [{"role": "user", "content": "How many tokens is this?"}]


def test_anthropic__count_tokens_errors_are_normalized(server):
    server.add(Reply(401, error("authentication_error", "bad key")))
    with pytest.raises(AutomateError) as info:
        make(server).count_tokens("x")
    assert info.value.code == ErrorCodes.UNAUTHENTICATED


def test_anthropic__a_per_call_timeout_overrides_the_profile_timeout(server):
    provider = warmed(server, "sync", timeout=60)
    server.add(Reply(hang=True))
    with pytest.raises(AutomateError) as info:
        provider.complete(MESSAGES, timeout=0.3)
    assert info.value.code == ErrorCodes.TIMEOUT

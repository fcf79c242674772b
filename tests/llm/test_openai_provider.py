"""The openai provider against a local server speaking the Chat Completions wire format."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_llm.providers.openai import OpenAIProvider
from automate_llm.retry import RetryPolicy, acall_with_retry, call_with_retry
from tests.llm.conftest import require_sdk
from tests.llm.servers import Reply, ScriptedServer, sse


@pytest.fixture(autouse=True)
def _openai_sdk():
    require_sdk("openai", "openai")


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
]


def completion(content="Hello there", *, tool_calls=None, finish="stop"):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test-0001",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def chunk(delta, finish=None):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test-0001",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


STREAM = sse(
    chunk({"role": "assistant", "content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({}, finish="stop"),
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-test-0001",
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
    },
    "[DONE]",
)


def make(server: ScriptedServer, **config) -> OpenAIProvider:
    return OpenAIProvider(
        {"api_key": "sk-test-123456", "base_url": f"{server.url}/v1", "model": "gpt-test"} | config,
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
    server.add(Reply(200, completion()))
    complete(provider, mode)
    server.requests.clear()
    return provider


def stream(provider, mode, **kwargs):
    if mode == "sync":
        return list(provider.stream(MESSAGES, **kwargs))

    async def collect():
        return [c async for c in provider.astream(MESSAGES, **kwargs)]

    return asyncio.run(collect())


MODES = ["sync", "async"]


@pytest.mark.parametrize("mode", MODES)
def test_openai__success_returns_content_usage_and_sends_the_wire_format(server, mode):
    server.add(Reply(200, completion()))
    result = complete(make(server, max_tokens=50, temperature=0.2), mode)
    assert result.content == "Hello there"
    assert result.model == "gpt-test-0001"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (11, 3)
    assert result.usage.estimated is False
    assert result.finish_reason == "stop"
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-123456"
    body = request.json()
    assert body["model"] == "gpt-test"
    assert body["messages"] == MESSAGES
    assert (body["max_tokens"], body["temperature"]) == (50, 0.2)


@pytest.mark.parametrize("mode", MODES)
def test_openai__chat_is_the_content_of_complete(server, mode):
    server.add(Reply(200, completion("Just text")))
    provider = make(server)
    text = provider.chat(MESSAGES) if mode == "sync" else asyncio.run(provider.achat(MESSAGES))
    assert text == "Just text"


@pytest.mark.parametrize("mode", MODES)
def test_openai__streaming_yields_deltas_then_usage(server, mode):
    server.add(Reply(200, events=STREAM))
    chunks = stream(make(server), mode)
    assert "".join(c.delta for c in chunks) == "Hello"
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (9, 2)
    body = server.requests[0].json()
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("mode", MODES)
def test_openai__tool_calls_are_parsed_and_tools_sent_as_functions(server, mode):
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
    server.add(Reply(200, completion(None, tool_calls=calls, finish="tool_calls")))
    result = complete(make(server), mode, tools=TOOLS)
    assert result.content == ""
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "get_weather", {"city": "Oslo"})
    sent = server.requests[0].json()["tools"]
    assert sent == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": TOOLS[0]["parameters"],
            },
        }
    ]


def test_openai__streamed_tool_call_fragments_are_assembled(server):
    events = sse(
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"ci'},
                    }
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Rome"}'}}]}),
        chunk({}, finish="tool_calls"),
        "[DONE]",
    )
    server.add(Reply(200, events=events))
    chunks = list(make(server).stream(MESSAGES, tools=TOOLS))
    calls = [c for chunk_ in chunks for c in chunk_.tool_calls]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_9", "get_weather", {"city": "Rome"})
    ]


def test_openai__tool_answers_round_trip_in_the_wire_format(server):
    server.add(Reply(200, completion("It is sunny")))
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": {"sky": "clear"}},
    ]
    make(server).complete(messages)
    sent = server.requests[0].json()["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": json.dumps({"city": "Oslo"}),
    }
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'}


@pytest.mark.parametrize("mode", MODES)
def test_openai__429_carries_retry_after_and_the_sdk_does_not_retry(server, mode):
    server.add(Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "7"}))
    with pytest.raises(AutomateError) as info:
        complete(make(server), mode)
    error = info.value
    assert error.code == ErrorCodes.RATE_LIMITED
    assert error.retryable is True
    assert error.details["retry_after"] == 7.0
    assert "slow down" in error.message
    assert len(server.requests) == 1  # max_retries=0: the SDK made no retry of its own


def retrying(provider, mode, policy, waits):
    """Call through our retry layer, recording each wait instead of sleeping."""
    if mode == "sync":
        return call_with_retry(lambda: provider.complete(MESSAGES), policy, sleep=waits.append)

    async def record(seconds):
        waits.append(seconds)

    return asyncio.run(acall_with_retry(lambda: provider.acomplete(MESSAGES), policy, sleep=record))


@pytest.mark.parametrize("mode", MODES)
def test_openai__429_then_success_through_our_retry_honours_retry_after(server, mode):
    server.add(Reply(429, {"error": {"message": "slow"}}, headers={"Retry-After": "3"}))
    server.add(Reply(200, completion("after the wait")))
    waits: list[float] = []
    result = retrying(make(server), mode, RetryPolicy(max_attempts=3, base_delay=0.01), waits)
    assert result.content == "after the wait"
    assert waits == [3.0]
    assert len(server.requests) == 2


@pytest.mark.parametrize("mode", MODES)
def test_openai__a_burst_of_500s_is_unavailable_and_retryable_until_attempts_run_out(server, mode):
    for _ in range(3):
        server.add(Reply(500, {"error": {"message": "boom"}}))
    policy = RetryPolicy(max_attempts=3, base_delay=0.01)
    waits: list[float] = []
    with pytest.raises(AutomateError) as info:
        retrying(make(server), mode, policy, waits)
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable is True
    assert info.value.details["status"] == 500
    assert info.value.details["attempts"] == 3
    assert len(waits) == 2
    assert len(server.requests) == 3


def test_openai__500s_then_success_within_the_attempts(server):
    server.add(Reply(502, b"bad gateway"), Reply(503, b""), Reply(200, completion("back")))
    result = call_with_retry(
        lambda: make(server).complete(MESSAGES),
        RetryPolicy(max_attempts=4, base_delay=0.01),
        sleep=lambda s: None,
    )
    assert result.content == "back"
    assert len(server.requests) == 3


@pytest.mark.parametrize("mode", MODES)
def test_openai__a_silent_server_is_a_retryable_timeout(server, mode):
    provider = warmed(server, mode, timeout=0.3)
    server.add(Reply(hang=True))
    with pytest.raises(AutomateError) as info:
        complete(provider, mode)
    assert info.value.code == ErrorCodes.TIMEOUT
    assert info.value.retryable is True
    assert len(server.requests) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b'{"id": "chatcmpl-1", "choices": [tru'),
        Reply(200, b"<html>gateway</html>", headers={"Content-Type": "text/html"}),
    ],
    ids=["truncated-json", "html-page"],
)
def test_openai__malformed_json_is_unavailable_and_retryable(server, mode, reply):
    server.add(reply)
    with pytest.raises(AutomateError) as info:
        complete(make(server), mode)
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable is True
    assert info.value.details["reason"] == "malformed_response"


@pytest.mark.parametrize("mode", MODES)
def test_openai__401_is_unauthenticated_and_final(server, mode):
    server.add(Reply(401, {"error": {"message": "Incorrect API key provided"}}))
    with pytest.raises(AutomateError) as info:
        complete(make(server), mode)
    assert info.value.code == ErrorCodes.UNAUTHENTICATED
    assert info.value.retryable is False
    waits: list[float] = []
    server.add(Reply(401, {"error": {"message": "Incorrect API key provided"}}))
    with pytest.raises(AutomateError):
        call_with_retry(lambda: make(server).complete(MESSAGES), RetryPolicy(), sleep=waits.append)
    assert waits == []  # never retried
    assert len(server.requests) == 2


def test_openai__400_is_invalid_argument(server):
    server.add(Reply(400, {"error": {"message": "max_tokens is too large"}}))
    with pytest.raises(AutomateError) as info:
        make(server).complete(MESSAGES)
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert info.value.retryable is False


def test_openai__streaming_errors_are_normalized_too(server):
    server.add(Reply(429, {"error": {"message": "slow"}}, headers={"retry-after-ms": "1500"}))
    with pytest.raises(AutomateError) as info:
        list(make(server).stream(MESSAGES))
    assert info.value.code == ErrorCodes.RATE_LIMITED
    assert info.value.details["retry_after"] == 1.5


def test_openai__a_refused_connection_is_unavailable():
    srv = ScriptedServer()
    url = srv.url
    srv.httpd.server_close()  # the port is free again: nobody listens
    provider = OpenAIProvider({"api_key": "k", "base_url": f"{url}/v1", "timeout": 2}, None)
    with pytest.raises(AutomateError) as info:
        provider.complete(MESSAGES)
    assert info.value.code == ErrorCodes.UNAVAILABLE
    assert info.value.retryable is True


def test_openai__structured_output_is_requested_as_json_schema(server):
    server.add(Reply(200, completion('{"ok": true}')))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    make(server).complete(MESSAGES, response_schema=schema)
    assert server.requests[0].json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }


def test_openai__unknown_config_fields_are_rejected():
    with pytest.raises(Exception, match="api_kee"):
        OpenAIProvider({"api_kee": "x"}, None)


def through_factory(provider_key, *, asynchronous, timeout):
    """An HTTP client factory as a project would write one (e.g. around the SSRF client)."""
    import openai

    cls = openai.DefaultAsyncHttpxClient if asynchronous else openai.DefaultHttpxClient
    return cls(timeout=timeout, headers={"X-Through": f"factory-{provider_key}"})


@pytest.mark.parametrize("mode", MODES)
def test_openai__a_configured_http_client_factory_carries_the_requests(server, mode, settings):
    settings.AUTOMATE = {
        "LLM_HTTP_CLIENT_FACTORY": "tests.llm.test_openai_provider.through_factory"
    }
    server.add(Reply(200, completion()))
    provider = make(server)
    assert complete(provider, mode).content == "Hello there"
    provider.close()
    assert server.requests[0].headers["x-through"] == "factory-openai"


def test_openai__a_per_call_timeout_overrides_the_profile_timeout(server):
    provider = warmed(server, "sync", timeout=60)
    server.add(Reply(hang=True))
    with pytest.raises(AutomateError) as info:
        provider.complete(MESSAGES, timeout=0.3)
    assert info.value.code == ErrorCodes.TIMEOUT

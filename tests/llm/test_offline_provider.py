"""The offline provider: deterministic answers, streams, tool calls, schema samples."""

from __future__ import annotations

import asyncio
import socket

import pytest
from jsonschema import Draft202012Validator

from automate_llm.providers.offline import OfflineEchoProvider, sample_from_schema

USER = [{"role": "system", "content": "sys"}, {"role": "user", "content": "ping"}]


def test_offline__echoes_the_last_user_message_the_same_way_every_time():
    provider = OfflineEchoProvider({}, None)
    first = provider.complete(USER)
    assert first.content == "echo: ping"
    assert provider.complete(USER) == first
    assert first.model == "offline-echo"
    assert first.usage.estimated is True
    assert provider.chat(USER) == "echo: ping"
    assert asyncio.run(provider.achat(USER)) == "echo: ping"


def test_offline__never_opens_a_socket(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the offline provider opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert OfflineEchoProvider({"reply": "fixed"}, None).complete(USER).content == "fixed"


def test_offline__stream_yields_words_then_usage():
    chunks = list(OfflineEchoProvider({"reply": "one two three"}, None).stream(USER))
    assert "".join(c.delta for c in chunks) == "one two three"
    assert chunks[-1].usage is not None
    assert chunks[-1].finish_reason == "stop"

    async def collect():
        return [c async for c in OfflineEchoProvider({"reply": "a b"}, None).astream(USER)]

    assert "".join(c.delta for c in asyncio.run(collect())) == "a b"


def test_offline__calls_the_configured_tool_with_arguments_from_its_schema():
    tools = [
        {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 3},
                    "kind": {"enum": ["a", "b"]},
                },
            },
        }
    ]
    result = OfflineEchoProvider({"tool_call": "lookup"}, None).complete(USER, tools=tools)
    assert result.finish_reason == "tool_calls"
    (call,) = result.tool_calls
    assert (call.name, call.arguments) == ("lookup", {"id": 3, "kind": "a"})


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string", "minLength": 10}}},
        {"type": "array", "items": {"type": "number"}, "minItems": 2},
        {"type": ["null", "boolean"]},
        {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        {"const": 42},
        {
            "type": "object",
            "properties": {"n": {"type": "object", "properties": {"x": {"default": 1}}}},
        },
    ],
)
def test_sample_from_schema__builds_values_that_validate(schema):
    value = sample_from_schema(schema)
    assert list(Draft202012Validator(schema).iter_errors(value)) == []


def test_offline__rejects_unknown_config():
    with pytest.raises(Exception, match="bogus"):
        OfflineEchoProvider({"bogus": 1}, None)

"""The guarded httpx2 client the LLM SDKs get (automate_core.sdkclient), sync and async."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest

from automate_core.providers.errors import AutomateError, ErrorCodes
from tests.llm.conftest import require_sdk
from tests.llm.servers import CHAT_COMPLETION, Reply, ScriptedServer

MESSAGES = [{"role": "user", "content": "hello"}]


def make(server: ScriptedServer, **config):
    require_sdk("openai", "openai")
    from automate_llm.providers.openai import OpenAIProvider

    return OpenAIProvider(
        {"api_key": "sk-test-123456", "base_url": f"{server.url}/v1", "model": "gpt-test"} | config,
        None,
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_guarded_client__answers_through_the_llm_allow_list(server, mode):
    server.add(Reply(body=CHAT_COMPLETION))
    provider = make(server)
    if mode == "sync":
        result = provider.complete(MESSAGES)
    else:
        result = asyncio.run(provider.acomplete(MESSAGES))
    assert result.content == "hi"
    assert server.requests[0].headers["accept-encoding"] == "identity"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_guarded_client__a_compressed_answer_is_refused(server, mode):
    body = gzip.compress(json.dumps(CHAT_COMPLETION).encode())
    server.add(Reply(body=body, headers={"Content-Encoding": "gzip"}))
    provider = make(server)

    def call() -> object:
        if mode == "sync":
            return provider.complete(MESSAGES)
        return asyncio.run(provider.acomplete(MESSAGES))

    with pytest.raises(AutomateError) as refused:
        call()
    assert refused.value.code == ErrorCodes.PERMISSION_DENIED
    assert refused.value.details["reason"] == "encoding"


def test_guarded_client__a_redirect_is_not_followed(server):
    other = ScriptedServer().start()
    try:
        other.add(Reply(body=CHAT_COMPLETION))
        server.add(Reply(status=307, headers={"Location": f"{other.url}/v1/chat/completions"}))
        with pytest.raises(AutomateError):
            make(server).complete(MESSAGES)
    finally:
        other.stop()
    assert other.requests == []  # the API key never followed the redirect


def test_guarded_client__async_calls_are_guarded_too(server, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "HTTP_ALLOW_FOR": {}}
    server.add(Reply(body=CHAT_COMPLETION))
    with pytest.raises(AutomateError) as refused:
        asyncio.run(make(server).acomplete(MESSAGES))
    assert refused.value.details["reason"] == "private_address"
    assert server.requests == []


def _refusal_through_both_clients(server, settings, reply: Reply) -> list[AutomateError]:
    """The same answer read through the LLM SDKs' client and the MCP client's: one cap
    (automate_core.sdkclient.capped_body) serves both, so they must refuse it alike."""
    require_sdk("httpx2", "openai")
    from automate.mcp.transport import StatusObserver, guarded_client
    from automate_core.sdkclient import guarded_sdk_client

    settings.AUTOMATE = {
        **settings.AUTOMATE,
        "HTTP_ALLOW_FOR": {
            "llm": {"networks": ["127.0.0.1/32"]},
            "mcp": {"networks": ["127.0.0.1/32"]},
        },
    }
    server.add(reply, reply)
    errors: list[AutomateError] = []
    llm = guarded_sdk_client(asynchronous=False, timeout=5, purpose="llm", max_size=100)
    with llm, pytest.raises(AutomateError) as refused:
        llm.get(f"{server.url}/body").read()
    errors.append(refused.value)

    async def through_mcp() -> None:
        async with guarded_client({}, 5, StatusObserver(), max_size=100) as mcp:
            response = await mcp.get(f"{server.url}/body")
            await response.aread()

    with pytest.raises(AutomateError) as refused:
        asyncio.run(through_mcp())
    errors.append(refused.value)
    return errors


def test_guarded_client__llm_and_mcp_refuse_an_oversized_body_alike(server, settings):
    llm, mcp = _refusal_through_both_clients(server, settings, Reply(body=b"x" * 101))
    for error in (llm, mcp):
        assert type(error).__name__ == "ResponseTooLarge"
        assert error.code == ErrorCodes.PERMISSION_DENIED
        assert error.details["reason"] == "too_large"
        assert not error.retryable
    assert llm.message == mcp.message == "the response body exceeds max_size (100 bytes)"


def test_guarded_client__llm_and_mcp_refuse_an_encoded_body_alike(server, settings):
    reply = Reply(body=gzip.compress(b"{}"), headers={"Content-Encoding": "gzip"})
    llm, mcp = _refusal_through_both_clients(server, settings, reply)
    assert llm.details["reason"] == mcp.details["reason"] == "encoding"
    assert llm.message == mcp.message
    assert "'gzip'-encoded" in llm.message

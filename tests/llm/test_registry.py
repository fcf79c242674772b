"""The registry, and the spec's MyLLMProvider registered from a client app's ready()."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from automate_core.providers.base import ProviderContext
from automate_core.registry import AlreadyRegistered, NotRegistered
from automate_llm.providers.base import BaseLLMProvider, ChatResult
from automate_llm.providers.offline import OfflineEchoProvider
from automate_llm.registry import (
    LLMProviderRegistry,
    get_provider,
    llm_providers,
    providers,
    register_provider,
)
from tests.llm.servers import Reply
from tests.testapp.llm_providers import MyLLMProvider


def test_registry__the_spec_provider_is_found_by_key_after_ready():
    assert get_provider("my_llm") is MyLLMProvider
    assert MyLLMProvider in providers()


def test_registry__builtins_are_registered_by_ready():
    keys = {cls.key for cls in providers()}
    assert {"openai", "anthropic", "offline"} <= keys
    assert llm_providers.is_builtin("openai")
    assert not llm_providers.is_builtin("my_llm")


def test_registry__registering_the_same_class_again_is_harmless():
    assert register_provider(MyLLMProvider) is MyLLMProvider
    llm_providers.load()  # ready() may run again
    assert get_provider("my_llm") is MyLLMProvider
    assert get_provider("offline") is OfflineEchoProvider


def test_registry__another_class_under_a_taken_key_is_an_error():
    registry = LLMProviderRegistry()
    registry.register(MyLLMProvider)

    class Impostor(MyLLMProvider):
        pass

    with pytest.raises(AlreadyRegistered, match="my_llm"):
        registry.register(Impostor)


def test_registry__a_project_class_may_take_a_builtin_key():
    registry = LLMProviderRegistry()
    registry.load()

    class MyOffline(OfflineEchoProvider):
        key = "offline"

    registry.register(MyOffline)
    assert registry.get("offline") is MyOffline


def test_registry__unknown_key_names_the_registered_ones():
    with pytest.raises(NotRegistered, match=r"registered: .*offline"):
        get_provider("nope")


class _Schema(BaseModel):
    model: str = "x"


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({}, "must implement chat\\(\\) or complete\\(\\)"),
        ({"chat": lambda self, m, **k: "", "key": ""}, "non-empty string `key`"),
        (
            {"chat": lambda self, m, **k: "", "config_schema": classmethod(lambda cls: dict)},
            "pydantic BaseModel",
        ),
        ({"chat": lambda self, m, **k: "", "achat": lambda self, m, **k: ""}, "async def"),
        ({"chat": lambda self, m, **k: "", "secret_fields": ("api_key",)}, "secret_fields"),
    ],
    ids=["no-chat", "no-key", "bad-schema", "sync-achat", "unknown-secret-field"],
)
def test_registry__a_class_of_the_wrong_shape_is_refused_when_it_registers(attrs, message):
    namespace = {"key": "broken", "config_schema": classmethod(lambda cls: _Schema)} | attrs
    cls = type("Broken", (BaseLLMProvider,), namespace)
    with pytest.raises(TypeError, match=message):
        LLMProviderRegistry().register(cls)


def test_registry__only_base_llm_provider_subclasses_register():
    class NotAProvider:
        key = "x"

    with pytest.raises(TypeError, match="must subclass"):
        LLMProviderRegistry().register(NotAProvider)


# -- The spec's MyLLMProvider, unchanged, against a real local HTTP server ------------------


def test_spec_provider__chat_posts_to_the_endpoint_and_returns_content(server):
    server.add(Reply(200, {"content": "Hello from my LLM"}))
    cls = get_provider("my_llm")
    provider = cls({"api_key": "key-123456", "endpoint": server.url}, ProviderContext())
    answer = provider.chat([{"role": "user", "content": "Hi"}])
    assert answer == "Hello from my LLM"
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/chat")
    assert request.headers["authorization"] == "Bearer key-123456"
    assert request.json() == {"messages": [{"role": "user", "content": "Hi"}], "model": "default"}


def test_spec_provider__count_tokens_is_its_own_estimate():
    provider = MyLLMProvider({"api_key": "k", "endpoint": "http://127.0.0.1:9"}, None)
    assert provider.count_tokens("x" * 40) == 10


def test_spec_provider__complete_is_derived_from_its_chat_with_estimated_usage(server):
    server.add(Reply(200, {"content": "12345678"}))
    provider = MyLLMProvider({"api_key": "k", "endpoint": server.url, "model": "m1"}, None)
    result = provider.complete([{"role": "user", "content": "x" * 16}])
    assert isinstance(result, ChatResult)
    assert result.content == "12345678"
    assert result.model == "m1"
    assert (result.usage.input_tokens, result.usage.output_tokens) == (4, 2)
    assert result.usage.estimated is True


def test_spec_provider__its_config_is_validated_by_its_own_schema():
    with pytest.raises(Exception, match="endpoint"):
        MyLLMProvider({"api_key": "k"}, None)


def test_base__an_unregistered_class_without_chat_fails_clearly_instead_of_recursing():
    class Empty(BaseLLMProvider):
        key = "empty"

    with pytest.raises(TypeError, match="chat\\(\\) or complete\\(\\)"):
        Empty({}, None).chat([{"role": "user", "content": "x"}])

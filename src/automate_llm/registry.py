"""The LLM provider registry, filled in ``AppConfig.ready()``.

Built-ins (``openai``, ``anthropic``, ``offline``) are registered by this app's ``ready()``;
a project registers its own from its ``AppConfig.ready()``, as the spec shows::

    def ready(self):
        from automate_llm.registry import register_provider
        from .providers import MyLLMProvider
        register_provider(MyLLMProvider)

Registering the same class twice is harmless; another class under a taken key raises
:class:`~automate_core.registry.AlreadyRegistered`, except that a project may take a
built-in's key for its own class. A class of the wrong shape raises ``TypeError`` when it
registers, not on its first call.
"""

from __future__ import annotations

import inspect

from pydantic import BaseModel

from automate_core.registry import AlreadyRegistered, NotRegistered, Registry, RegistryNotReady
from automate_llm.providers.base import BaseLLMProvider, implements_chat

__all__ = [
    "AlreadyRegistered",
    "LLMProviderRegistry",
    "NotRegistered",
    "RegistryNotReady",
    "get_provider",
    "llm_providers",
    "providers",
    "register_provider",
]

#: Built-in provider classes, as dotted paths (their SDKs are imported on first use only).
BUILTIN_PROVIDERS: tuple[str, ...] = (
    "automate_llm.providers.offline.OfflineEchoProvider",
    "automate_llm.providers.openai.OpenAIProvider",
    "automate_llm.providers.anthropic.AnthropicProvider",
)


def check_provider_shape(cls: type) -> None:
    """Raise ``TypeError`` describing the first thing wrong with an LLM provider class."""
    name = f"{cls.__module__}.{cls.__qualname__}"
    if not issubclass(cls, BaseLLMProvider):  # the registry checked it; narrows the type
        raise TypeError(f"{name} must subclass BaseLLMProvider")
    schema = cls.config_schema()
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError(f"{name}.config_schema() must return a pydantic BaseModel subclass")
    if not implements_chat(cls):
        raise TypeError(f"{name} must implement chat() or complete()")
    for method in ("achat", "acomplete"):
        if not inspect.iscoroutinefunction(getattr(cls, method)):
            raise TypeError(f"{name}.{method} must be an async def")
    for method in ("chat", "complete", "count_tokens"):
        if inspect.iscoroutinefunction(getattr(cls, method)):
            raise TypeError(f"{name}.{method} must be a plain def (use achat for async)")
    unknown = [f for f in cls.secret_fields if f not in schema.model_fields]
    if unknown:
        raise TypeError(f"{name}.secret_fields names fields its config lacks: {unknown}")


class LLMProviderRegistry(Registry[type[BaseLLMProvider]]):
    def __init__(self) -> None:
        super().__init__(
            "LLM provider",
            base=BaseLLMProvider,
            validate=check_provider_shape,
            app="automate_llm",
            builtins=BUILTIN_PROVIDERS,
        )


#: The registry every part of Django Automate reads.
llm_providers = LLMProviderRegistry()


def register_provider(cls: type[BaseLLMProvider]) -> type[BaseLLMProvider]:
    """Register an LLM provider class (usable as a decorator)."""
    return llm_providers.register(cls)


def get_provider(key: str) -> type[BaseLLMProvider]:
    """The provider class registered under ``key``; raises :class:`NotRegistered`."""
    return llm_providers.get(key)


def providers() -> list[type[BaseLLMProvider]]:
    """Every registered provider class, sorted by key."""
    return llm_providers.all()

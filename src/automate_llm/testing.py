"""A fake LLM for tests: :class:`FakeLLMProvider` answers from a script and records calls.

It is a real provider (it subclasses :class:`~automate_llm.providers.base.BaseLLMProvider`
and registers like any other, under the key ``"fake"``), so code under test reaches it
through the same profiles and ``llm`` steps as in production; only the model is replaced.
A workflow's ``llm`` step builds its own provider instance from a profile, so the
``fake_llm`` fixture of :mod:`automate_testing` *installs* one script that every instance
shares. It imports no Django model: it is usable without a database.

Also importable from :mod:`automate_testing.fakes`, as the same objects.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from django.apps import apps
from pydantic import BaseModel, ConfigDict, Field

from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_llm.providers.base import BaseLLMProvider, ChatResult, Usage
from automate_llm.registry import llm_providers

__all__ = ["FakeLLMCall", "FakeLLMConfig", "FakeLLMProvider", "Reply"]

#: A scripted reply: text, a full ChatResult, an exception to raise, or a function of the
#: messages returning either of the first two.
Reply = str | ChatResult | BaseException | Callable[[list[dict]], "str | ChatResult"]


@dataclass(frozen=True)
class FakeLLMCall:
    """One call the fake received: the messages and the keyword arguments (model, tools...)."""

    messages: list[dict]
    kwargs: dict[str, Any]

    @property
    def last_user_message(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return str(message.get("content") or "")
        return ""


@dataclass
class _Script:
    replies: deque[Reply] = field(default_factory=deque)
    calls: list[FakeLLMCall] = field(default_factory=list)
    default: Reply | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_reply(self, messages: list[dict], kwargs: dict[str, Any]) -> Reply:
        with self.lock:
            self.calls.append(FakeLLMCall(list(messages), dict(kwargs)))
            if self.replies:
                return self.replies.popleft()
            if self.default is not None:
                return self.default
            count = len(self.calls)
        raise AssertionError(
            f"FakeLLMProvider has no scripted reply for call {count} (last user message: "
            f"{self.calls[-1].last_user_message!r}): add one with fake_llm.add_replies(...) "
            "or set a default with fake_llm.default = '...'"
        )


class FakeLLMConfig(BaseModel):
    """Profile config: ``replies`` to give in order, then ``default`` for every later call."""

    model_config = ConfigDict(extra="forbid")

    model: str = "fake-llm"
    replies: list[str] = Field(default_factory=list)
    default: str | None = None


class FakeLLMProvider(BaseLLMProvider):
    """Answers from a script, in order; records every call. Never opens a socket.

    ::

        llm = FakeLLMProvider(replies=["Paris", AutomateError(ErrorCodes.RATE_LIMITED)])
        assert llm.chat([{"role": "user", "content": "Capital of France?"}]) == "Paris"
        assert llm.calls[0].last_user_message == "Capital of France?"

    Usage counts words (deterministic, no tokenizer download) and is not marked estimated.
    """

    key = "fake"
    display_name = "Fake LLM (scripted replies, for tests)"

    cfg: FakeLLMConfig
    #: The script every new instance uses while one is installed (see :meth:`installed`).
    _installed: ClassVar[_Script | None] = None

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        ctx: ProviderContext | None = None,
        *,
        replies: list[Reply] | None = None,
        default: Reply | None = None,
    ) -> None:
        super().__init__(config, ctx)
        installed = type(self)._installed
        if installed is not None and replies is None and default is None and not self.config:
            self._script = installed
        else:
            self._script = _Script(
                replies=deque(replies if replies is not None else self.cfg.replies),
                default=default if default is not None else self.cfg.default,
            )

    @classmethod
    def config_schema(cls) -> type[BaseModel]:
        return FakeLLMConfig

    # -- The script ----------------------------------------------------------------------

    def add_replies(self, *replies: Reply) -> FakeLLMProvider:
        """Queue more replies after the ones not used yet."""
        with self._script.lock:
            self._script.replies.extend(replies)
        return self

    @property
    def default(self) -> Reply | None:
        """The reply once the queue is empty; ``None`` makes an extra call fail the test."""
        return self._script.default

    @default.setter
    def default(self, reply: Reply | None) -> None:
        self._script.default = reply

    @property
    def calls(self) -> list[FakeLLMCall]:
        """Every call received, in order (shared by all instances of an installed script)."""
        return list(self._script.calls)

    @contextmanager
    def installed(self) -> Iterator[FakeLLMProvider]:
        """Make every ``FakeLLMProvider`` built without arguments use this script.

        Also registers the class as the LLM provider ``"fake"`` while installed (when
        Django is set up), so an ``LLMProfile(provider_key="fake")`` reaches it.
        """
        cls = type(self)
        previous = cls._installed
        registered = _register_llm(cls)
        cls._installed = self._script
        try:
            yield self
        finally:
            cls._installed = previous
            if registered:
                llm_providers.unregister(cls.key)

    # -- BaseLLMProvider -----------------------------------------------------------------

    def complete(self, messages: list[dict], **kwargs: Any) -> ChatResult:
        reply = self._script.next_reply(messages, kwargs)
        if isinstance(reply, BaseException):
            if isinstance(reply, AutomateError) and reply.provider is None:
                reply.provider = self.key
            raise reply
        if callable(reply) and not isinstance(reply, ChatResult):
            reply = reply(list(messages))
        if isinstance(reply, ChatResult):
            return reply
        if not isinstance(reply, str):
            raise AutomateError(
                ErrorCodes.INTERNAL,
                f"a FakeLLMProvider reply must be text or a ChatResult, not {reply!r}",
                provider=self.key,
            )
        return ChatResult(
            content=reply,
            model=str(kwargs.get("model") or self.cfg.model),
            usage=Usage(
                input_tokens=sum(self.count_tokens(str(m.get("content") or "")) for m in messages),
                output_tokens=self.count_tokens(reply),
            ),
            finish_reason="stop",
        )

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def _register_llm(cls: type[FakeLLMProvider]) -> bool:
    """Register ``cls`` unless Django is not set up or the key is taken; True if it did."""
    if not apps.ready or cls.key in llm_providers:
        return False
    llm_providers.register(cls)
    return True

"""Shipped fakes for tests: an LLM that answers from a script, a retrieval store in memory.

Both are real providers (they subclass the bases and register like any other), so code
under test reaches them through the same profiles, knowledge bases and steps as in
production; only the model and the vector database are replaced.

* :class:`FakeLLMProvider` (key ``"fake"``) answers with scripted replies in order and
  records every call. A workflow's ``llm`` step builds its own provider instance from a
  profile, so the ``fake_llm`` fixture *installs* one script that every instance shares.
* :class:`InMemoryRetrievalProvider` (key ``"in_memory"``) keeps passages in a dict per
  namespace, scored by cosine similarity, with the same filter syntax as the built-in
  stores. Instances share the dict (as they would share a database); the
  ``in_memory_retriever`` fixture empties it after each test.

Neither imports Django models: they are usable without a database.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument
from automate_llm.providers.base import BaseLLMProvider, ChatResult, Usage
from rag import filters as rag_filters
from rag.providers._common import check_documents, check_ids, check_query
from rag.providers.base import BaseRetrievalProvider

__all__ = ["FakeLLMCall", "FakeLLMProvider", "InMemoryRetrievalProvider", "Reply"]

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
                from automate_llm.registry import llm_providers

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
    try:
        from django.apps import apps

        if not apps.ready:
            return False
        from automate_llm.registry import llm_providers
    except ImportError:  # automate_llm is not installed
        return False
    if cls.key in llm_providers:
        return False
    llm_providers.register(cls)
    return True


class InMemoryRetrievalProvider(BaseRetrievalProvider):
    """Passages in a process-wide dict per ``namespace``; exact cosine search.

    Validation and filters are the built-in stores' own, so a test that passes here
    passes against ``local`` or ``pgvector`` for the same reasons.
    """

    key = "in_memory"
    display_name = "In memory (for tests)"

    #: namespace -> id -> passage; shared by every instance, cleared by :meth:`clear_all`.
    _stores: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def namespace(self) -> str:
        return str(self.config.get("namespace", ""))

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        """This namespace's passages by id (a copy: assert on it, do not write to it)."""
        with self._lock:
            return {k: dict(v) for k, v in self._stores.get(self.namespace, {}).items()}

    @classmethod
    def clear_all(cls) -> None:
        with cls._lock:
            cls._stores.clear()

    def index_documents(self, documents: list[dict]) -> int:
        checked = check_documents(self.key, documents)
        if not checked:
            return 0
        with self._lock:
            store = self._stores.setdefault(self.namespace, {})
            held = next(iter(store.values()), None)
            if held is not None and len(held["embedding"]) != len(checked[0]["embedding"]):
                raise invalid_argument(
                    None,
                    f"namespace {self.namespace!r} holds {len(held['embedding'])}-dimension "
                    f"vectors, these have {len(checked[0]['embedding'])}",
                    provider=self.key,
                )
            for doc in checked:
                store[doc["id"]] = doc
        return len(checked)

    def retrieve(
        self, query_embedding: list[float], top_k: int = 5, filters: dict | None = None
    ) -> list[dict]:
        query, conditions = check_query(self.key, query_embedding, top_k, filters)
        scored = []
        for doc in self.documents.values():
            if len(doc["embedding"]) != len(query):
                raise invalid_argument(
                    None,
                    f"the query has {len(query)} dimensions, namespace {self.namespace!r} "
                    f"holds {len(doc['embedding'])}: is the embedding model the same?",
                    provider=self.key,
                )
            if conditions and not rag_filters.matches(doc["metadata"], conditions):
                continue
            scored.append((_cosine(query, doc["embedding"]), doc))
        scored.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
        return [
            {"id": d["id"], "score": s, "content": d["content"], "metadata": dict(d["metadata"])}
            for s, d in scored[:top_k]
        ]

    def delete(self, ids: list[str]) -> int:
        check_ids(self.key, ids)
        with self._lock:
            store = self._stores.get(self.namespace, {})
            return sum(store.pop(i, None) is not None for i in ids)


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0

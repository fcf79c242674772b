"""What a retrieval provider is: the vector store half of RAG.

A retrieval provider stores passages with their embeddings (:meth:`index_documents`) and
returns the nearest ones for a query embedding (:meth:`retrieve`). It never embeds text
itself: the knowledge base pairs it with an embedding provider, so the same store can hold
vectors from any model. Results are plain dicts so that a client's provider (the spec's
``PineconeProvider``) needs nothing from us but this base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, TypedDict

from automate_core.providers.base import BaseProvider
from automate_core.providers.errors import invalid_argument


class RetrievedPassage(TypedDict):
    """One result of :meth:`BaseRetrievalProvider.retrieve`, best first."""

    id: str
    score: float
    content: str | None
    metadata: dict[str, Any]


class IndexDocument(TypedDict, total=False):
    """One input of :meth:`BaseRetrievalProvider.index_documents`."""

    id: str
    embedding: list[float]
    content: str
    metadata: dict[str, Any]


class BaseRetrievalProvider(BaseProvider, ABC):
    """Subclass this, set ``key`` and implement ``retrieve`` and ``index_documents``.

    ``config`` is the provider's configuration from the knowledge base (or from whoever
    builds it); secret values are ``secret://NAME`` references resolved by the provider.
    Built-ins also take ``namespace`` (a knowledge base passes its slug) so that several
    knowledge bases can share one store.
    """

    #: True when :meth:`retrieve` accepts ``query_text`` (hybrid full-text + vector search).
    supports_text_query: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})

    @abstractmethod
    def retrieve(
        self,
        query_embedding: list[float],
        top_k: int = 5,
        filters: dict | None = None,
    ) -> list[dict]:
        """The ``top_k`` passages nearest to ``query_embedding``, best first.

        Each is ``{"id", "score", "content", "metadata"}``; a higher score is closer.
        ``filters`` restricts the candidates by metadata (see :mod:`rag.filters`).
        """

    @abstractmethod
    def index_documents(self, documents: list[dict]) -> int:
        """Insert or replace ``documents`` (``id``, ``embedding``, ``content``, ``metadata``).

        Returns how many were written. Writing the same id again replaces it.
        """

    def delete(self, ids: list[str]) -> int:
        """Remove passages by id; ids the store does not hold are ignored.

        Providers that cannot delete keep this default, which says so instead of
        pretending: re-ingesting a changed document then reports the stale ids.
        """
        raise invalid_argument(
            None,
            f"retrieval provider {self.key!r} does not support deleting passages",
            provider=self.key,
        )

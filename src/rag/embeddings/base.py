"""What an embedding provider is: text in, one vector per text out.

Some models embed a search query differently from the passages it should find (Cohere's
``input_type``, E5's ``query:`` prefix). :meth:`embed_documents` and :meth:`embed_query`
carry that distinction; both fall back to :meth:`embed`, the one method the spec's
``CohereEmbeddingProvider`` implements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from automate_core import secrets
from automate_core.providers.base import BaseProvider
from rag.http import check_grant


class BaseEmbeddingProvider(BaseProvider, ABC):
    """Subclass this, set ``key`` and ``dimensions`` and implement :meth:`embed`.

    ``config["api_key"]`` may be a ``secret://NAME`` reference; it is resolved here and
    offered as ``self.api_key`` (``None`` when not configured), because the spec's client
    providers use ``self.api_key`` without setting it. The reference must be granted to
    the service's host (see :func:`rag.http.check_grant`): ``config["base_url"]``'s, else
    :attr:`default_host`.
    """

    #: Length of every vector this provider returns; a built-in may change it per instance.
    dimensions: ClassVar[int] = 0
    #: The service's own API host (the key's implicit grant when no base_url is set).
    default_host: ClassVar[str] = ""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        api_key = self.config.get("api_key")
        if api_key and secrets.is_reference(api_key):
            check_grant(str(api_key), self.config.get("base_url") or self.default_host)
        self.api_key: str | None = secrets.resolve(str(api_key)) if api_key else None

    @abstractmethod
    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector of :attr:`dimensions` floats per text, in order."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for passages being indexed."""
        return self.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector for one search query."""
        return self.embed([text])[0]

    def text_lengths(self, texts: list[str]) -> list[int]:
        """The size of each text as the model sees it, to batch texts of similar size.

        Characters by default; a local model counts its tokens.
        """
        return [len(text) for text in texts]

    def embedding_threads(self) -> int:
        """How many batches :func:`rag.ingest.ingest_documents` may embed at once with this
        one instance, each on its own thread (the caller may ask for fewer).

        One by default: a hosted service is called one batch at a time. A provider that
        computes on this machine, and whose :meth:`embed_documents` several threads may
        call at once, returns more (the local model: torch's intra-op threads).
        """
        return 1

    def prepare_embedding_thread(self) -> None:
        """Called in an ingestion's embedding thread before each batch it embeds there.

        Nothing by default; a local model sets how the thread computes (once per thread:
        it is called for every batch).
        """

    @property
    def vector_size(self) -> int:
        """The instance's vector length (a built-in may configure a non-default size)."""
        return int(self.dimensions)

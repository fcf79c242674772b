"""The registries of retrieval and embedding providers, filled in ``AppConfig.ready()``.

A project registers its own providers from its app's ``ready()``::

    from rag.registry import register_retrieval_provider
    register_retrieval_provider(PineconeProvider)

A project's class may take the key of a built-in (its ``pinecone`` replaces ours); two
project classes under one key are an error.
"""

from __future__ import annotations

from automate_core.registry import Registry
from rag.embeddings.base import BaseEmbeddingProvider
from rag.providers.base import BaseRetrievalProvider


def _check_dimensions(cls: type) -> None:
    dimensions = getattr(cls, "dimensions", 0)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions <= 0:
        raise TypeError(
            f"{cls.__qualname__}.dimensions must be a positive int (the length of its vectors)"
        )


# The built-ins as dotted paths: imported by load() only, and their SDKs only when used.
retrieval_providers: Registry[type[BaseRetrievalProvider]] = Registry(
    "retrieval provider",
    base=BaseRetrievalProvider,
    app="rag",
    builtins=(
        "rag.providers.local.LocalRetrievalProvider",
        "rag.providers.pgvector.PgVectorRetrievalProvider",
        "rag.providers.pinecone.PineconeRetrievalProvider",
    ),
)
embedding_providers: Registry[type[BaseEmbeddingProvider]] = Registry(
    "embedding provider",
    base=BaseEmbeddingProvider,
    validate=_check_dimensions,
    app="rag",
    builtins=(
        "rag.embeddings.local.LocalEmbeddingProvider",
        "rag.embeddings.openai.OpenAIEmbeddingProvider",
        "rag.embeddings.cohere.CohereEmbeddingProvider",
    ),
)


def register_retrieval_provider(
    cls: type[BaseRetrievalProvider], *, builtin: bool = False
) -> type[BaseRetrievalProvider]:
    return retrieval_providers.register(cls, builtin=builtin)


def register_embedding_provider(
    cls: type[BaseEmbeddingProvider], *, builtin: bool = False
) -> type[BaseEmbeddingProvider]:
    return embedding_providers.register(cls, builtin=builtin)


def get_retrieval_provider(key: str) -> type[BaseRetrievalProvider]:
    return retrieval_providers.get(key)


def get_embedding_provider(key: str) -> type[BaseEmbeddingProvider]:
    return embedding_providers.get(key)


def register_builtins() -> None:
    """Register the built-in providers (called from ``ready()``; idempotent)."""
    retrieval_providers.load()
    embedding_providers.load()

"""The registries of retrieval and embedding providers, filled in ``AppConfig.ready()``.

A project registers its own providers from its app's ``ready()``::

    from rag.registry import register_retrieval_provider
    register_retrieval_provider(PineconeProvider)

A project's class may take the key of a built-in (its ``pinecone`` replaces ours); two
project classes under one key are an error.
"""

from __future__ import annotations

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured

from automate_core.registry import Registry
from rag.embeddings.base import BaseEmbeddingProvider
from rag.providers.base import BaseRetrievalProvider


def _check_dimensions(cls: type) -> None:
    dimensions = getattr(cls, "dimensions", 0)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions <= 0:
        raise TypeError(
            f"{cls.__qualname__}.dimensions must be a positive int (the length of its vectors)"
        )


retrieval_providers: Registry[type[BaseRetrievalProvider]] = Registry(
    "retrieval provider", base=BaseRetrievalProvider
)
embedding_providers: Registry[type[BaseEmbeddingProvider]] = Registry(
    "embedding provider", base=BaseEmbeddingProvider, validate=_check_dimensions
)


def register_retrieval_provider(
    cls: type[BaseRetrievalProvider], *, builtin: bool = False
) -> type[BaseRetrievalProvider]:
    return retrieval_providers.register(cls, builtin=builtin)


def register_embedding_provider(
    cls: type[BaseEmbeddingProvider], *, builtin: bool = False
) -> type[BaseEmbeddingProvider]:
    return embedding_providers.register(cls, builtin=builtin)


def _check_ready() -> None:
    if not apps.ready:
        raise ImproperlyConfigured(
            "RAG providers are registered in AppConfig.ready(): look them up after "
            'django.setup(), with "rag" in INSTALLED_APPS'
        )


def get_retrieval_provider(key: str) -> type[BaseRetrievalProvider]:
    _check_ready()
    return retrieval_providers.get(key)


def get_embedding_provider(key: str) -> type[BaseEmbeddingProvider]:
    _check_ready()
    return embedding_providers.get(key)


def register_builtins() -> None:
    """Register the built-in providers; their SDKs are imported only when used."""
    from rag.embeddings.cohere import CohereEmbeddingProvider
    from rag.embeddings.local import LocalEmbeddingProvider
    from rag.embeddings.openai import OpenAIEmbeddingProvider
    from rag.providers.local import LocalRetrievalProvider
    from rag.providers.pgvector import PgVectorRetrievalProvider
    from rag.providers.pinecone import PineconeRetrievalProvider

    for retrieval in (LocalRetrievalProvider, PgVectorRetrievalProvider, PineconeRetrievalProvider):
        register_retrieval_provider(retrieval, builtin=True)
    for embedding in (LocalEmbeddingProvider, OpenAIEmbeddingProvider, CohereEmbeddingProvider):
        register_embedding_provider(embedding, builtin=True)

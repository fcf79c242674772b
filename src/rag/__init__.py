"""Retrieval-augmented generation for Django Automate (knowledge bases, retrieval, embeddings).

The names a provider module or a caller needs are importable from the package::

    from rag import BaseRetrievalProvider, register_retrieval_provider
    from rag import ingest_text, search

The longer paths (``rag.providers.base``, ``rag.registry``, ``rag.query`` ...) keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automate_core import __version__ as __version__
from automate_core.exports import lazy_exports
from rag.embeddings.base import BaseEmbeddingProvider
from rag.providers.base import BaseRetrievalProvider, IndexDocument, RetrievedPassage
from rag.registry import (
    get_embedding_provider,
    get_retrieval_provider,
    register_embedding_provider,
    register_retrieval_provider,
)

if TYPE_CHECKING:
    from rag.ingest import IngestResult, SourceText, ingest_documents, ingest_paths, ingest_text
    from rag.query import search

__all__ = [
    "BaseEmbeddingProvider",
    "BaseRetrievalProvider",
    "IndexDocument",
    "IngestResult",
    "RetrievedPassage",
    "SourceText",
    "get_embedding_provider",
    "get_retrieval_provider",
    "ingest_documents",
    "ingest_paths",
    "ingest_text",
    "register_embedding_provider",
    "register_retrieval_provider",
    "search",
]

# Django imports this package while it loads the apps, before models may be imported;
# ingestion and search work on knowledge-base models, so they load on first access.
_LAZY = {
    "IngestResult": "rag.ingest",
    "SourceText": "rag.ingest",
    "ingest_documents": "rag.ingest",
    "ingest_paths": "rag.ingest",
    "ingest_text": "rag.ingest",
    "search": "rag.query",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

"""Knowledge bases, their documents and chunks, and the local store's vectors.

A knowledge base looks its providers up in :mod:`rag.registry`, which holds the ``local``
store; that store's table, ``LocalVector``, is defined in :mod:`rag.local_vectors` so the
store does not import this module back, and is re-exported here.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from rag.embeddings.base import BaseEmbeddingProvider
from rag.local_vectors import LocalVector
from rag.providers.base import BaseRetrievalProvider
from rag.registry import (
    embedding_providers,
    get_embedding_provider,
    get_retrieval_provider,
    retrieval_providers,
)

__all__ = ["Chunk", "Document", "KnowledgeBase", "LocalVector"]


class KnowledgeBase(models.Model):
    """A searchable collection: an embedding profile paired with a retrieval profile.

    Each profile is a provider key plus its configuration (secrets as ``secret://NAME``
    references). The built-in stores keep each knowledge base apart by ``namespace``,
    which defaults to the slug.
    """

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    embedding_provider = models.CharField(max_length=100, default="local")
    embedding_config = models.JSONField(default=dict, blank=True)
    retrieval_provider = models.CharField(max_length=100, default="local")
    retrieval_config = models.JSONField(default=dict, blank=True)
    chunk_size = models.PositiveIntegerField(default=800, help_text="Maximum characters per chunk.")
    chunk_overlap = models.PositiveIntegerField(
        default=100, help_text="Characters repeated from the end of the previous chunk."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("query_knowledgebase", "Can query knowledge bases")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.chunk_size < 50:
            errors["chunk_size"] = "Use at least 50 characters per chunk."
        elif self.chunk_overlap >= self.chunk_size:
            errors["chunk_overlap"] = "The overlap must be smaller than the chunk size."
        if self.embedding_provider not in embedding_providers:
            known = ", ".join(embedding_providers.keys())
            errors["embedding_provider"] = f"Unknown embedding provider (known: {known})."
        if self.retrieval_provider not in retrieval_providers:
            known = ", ".join(retrieval_providers.keys())
            errors["retrieval_provider"] = f"Unknown retrieval provider (known: {known})."
        for field in ("embedding_config", "retrieval_config"):
            if not isinstance(getattr(self, field), dict):
                errors[field] = "Use a JSON object."
        if errors:
            raise ValidationError(errors)

    def retrieval_settings(self) -> dict[str, Any]:
        config = dict(self.retrieval_config or {})
        config.setdefault("namespace", self.slug)
        return config

    def get_embedder(self) -> BaseEmbeddingProvider:
        return get_embedding_provider(self.embedding_provider)(dict(self.embedding_config or {}))

    def get_retriever(self) -> BaseRetrievalProvider:
        return get_retrieval_provider(self.retrieval_provider)(self.retrieval_settings())


class Document(models.Model):
    """One source (a file, a page) of a knowledge base, with the text last ingested."""

    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="documents"
    )
    source = models.CharField(max_length=500, help_text="Path or URI; unique per base.")
    title = models.CharField(max_length=300, blank=True)
    content = models.TextField()
    content_hash = models.CharField(max_length=64)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["knowledge_base", "source"]
        constraints = [
            models.UniqueConstraint(
                fields=["knowledge_base", "source"], name="rag_document_unique_source"
            )
        ]

    def __str__(self) -> str:
        return self.title or self.source


class Chunk(models.Model):
    """A passage of a document as indexed; ``vector_id`` is its id in the store."""

    knowledge_base = models.ForeignKey(
        KnowledgeBase, on_delete=models.CASCADE, related_name="chunks"
    )
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    ordinal = models.PositiveIntegerField()
    content = models.TextField()
    content_hash = models.CharField(max_length=64)
    vector_id = models.CharField(max_length=255)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["document", "ordinal"]
        constraints = [
            models.UniqueConstraint(
                fields=["document", "ordinal"], name="rag_chunk_unique_ordinal"
            ),
            models.UniqueConstraint(
                fields=["knowledge_base", "vector_id"], name="rag_chunk_unique_vector_id"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document} #{self.ordinal}"

"""Knowledge bases, their documents and chunks, and the local store's vectors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models

if TYPE_CHECKING:
    from rag.embeddings.base import BaseEmbeddingProvider
    from rag.providers.base import BaseRetrievalProvider


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
        from rag.registry import embedding_providers, retrieval_providers

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
        from rag.registry import get_embedding_provider

        return get_embedding_provider(self.embedding_provider)(dict(self.embedding_config or {}))

    def get_retriever(self) -> BaseRetrievalProvider:
        from rag.registry import get_retrieval_provider

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


class LocalVector(models.Model):
    """A passage held by the ``local`` store: float32 bytes, searched exactly in numpy.

    A binary column works on every database Django supports, which is the point of the
    local store: RAG with SQLite and nothing else.
    """

    namespace = models.CharField(max_length=200, db_index=True)
    vector_id = models.CharField(max_length=255)
    content = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    dimensions = models.PositiveIntegerField()
    embedding = models.BinaryField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "vector_id"], name="rag_localvector_unique_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.vector_id}"

"""The passages of the ``pgvector`` store.

The column has no fixed dimension so that knowledge bases with different embedding models
share the table; the provider builds one partial HNSW index per namespace over
``embedding::vector(N)`` (see :mod:`rag.providers.pgvector`).
"""

from __future__ import annotations

from django.db import models
from pgvector.django import VectorField


class PgVectorEntry(models.Model):
    namespace = models.CharField(max_length=200, db_index=True)
    vector_id = models.CharField(max_length=255)
    content = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    dimensions = models.PositiveIntegerField()
    embedding = VectorField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["namespace", "vector_id"], name="rag_pgvector_unique_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.namespace}/{self.vector_id}"

"""The table of the ``local`` store (:mod:`rag.providers.local`): one row per passage.

Apart from :mod:`rag.models`, which looks providers up in the registry: the registry holds
the ``local`` provider, and the provider needs only this table.
"""

from __future__ import annotations

from django.db import models


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

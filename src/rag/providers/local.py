"""The ``local`` store: vectors in the project's own database, exact search in numpy.

The embedded default. It needs no extension and works on SQLite: each passage's vector is
float32 bytes in :class:`rag.local_vectors.LocalVector`, and a query scores every passage of the
namespace that passes the filters. That is exact (no recall loss) and fast up to some tens
of thousands of passages; past that, move the knowledge base to ``pgvector``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.db import transaction

from automate_core.providers.errors import invalid_argument
from rag import filters as rag_filters
from rag.local_vectors import LocalVector
from rag.providers._common import check_documents, check_ids, check_query
from rag.providers.base import BaseRetrievalProvider

BATCH_SIZE = 500


class LocalRetrievalProvider(BaseRetrievalProvider):
    """Config: ``namespace`` (a knowledge base passes its slug)."""

    key = "local"
    display_name = "Local (database + numpy)"

    @property
    def namespace(self) -> str:
        return str(self.config.get("namespace", ""))

    def _rows(self):
        return LocalVector.objects.filter(namespace=self.namespace)

    def retrieve(
        self,
        query_embedding: list[float],
        top_k: int = 5,
        filters: dict | None = None,
    ) -> list[dict]:
        vector, conditions = check_query(self.key, query_embedding, top_k, filters)
        query = np.asarray(vector, dtype=np.float32)
        candidates: list[tuple[str, str, dict[str, Any]]] = []
        vectors: list[np.ndarray] = []
        for vector_id, content, metadata, dimensions, blob in self._rows().values_list(
            "vector_id", "content", "metadata", "dimensions", "embedding"
        ):
            if dimensions != query.shape[0]:
                raise invalid_argument(
                    None,
                    f"the query has {query.shape[0]} dimensions, namespace "
                    f"{self.namespace!r} holds {dimensions}: is the embedding model the same?",
                    provider=self.key,
                )
            if conditions and not rag_filters.matches(metadata or {}, conditions):
                continue
            candidates.append((vector_id, content, metadata or {}))
            vectors.append(np.frombuffer(bytes(blob), dtype=np.float32))
        if not candidates:
            return []
        matrix = np.vstack(vectors)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        scores = (matrix @ query) / np.where(norms == 0, 1.0, norms)
        k = min(top_k, len(candidates))
        best = np.argpartition(-scores, k - 1)[:k]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [
            {
                "id": candidates[i][0],
                "score": float(scores[i]),
                "content": candidates[i][1],
                "metadata": candidates[i][2],
            }
            for i in best
        ]

    def index_documents(self, documents: list[dict]) -> int:
        checked = check_documents(self.key, documents)
        if not checked:
            return 0
        dimensions = len(checked[0]["embedding"])
        held = self._rows().exclude(dimensions=dimensions).values_list("dimensions", flat=True)
        other = held.first()
        if other is not None:
            raise invalid_argument(
                None,
                f"namespace {self.namespace!r} holds {other}-dimension vectors, "
                f"these have {dimensions}",
                provider=self.key,
            )
        rows = [
            LocalVector(
                namespace=self.namespace,
                vector_id=doc["id"],
                content=doc["content"],
                metadata=doc["metadata"],
                dimensions=dimensions,
                embedding=np.asarray(doc["embedding"], dtype=np.float32).tobytes(),
            )
            for doc in checked
        ]
        with transaction.atomic():
            LocalVector.objects.bulk_create(
                rows,
                batch_size=BATCH_SIZE,
                update_conflicts=True,
                unique_fields=["namespace", "vector_id"],
                update_fields=["content", "metadata", "dimensions", "embedding"],
            )
        return len(rows)

    def delete(self, ids: list[str]) -> int:
        check_ids(self.key, ids)
        deleted = 0
        for start in range(0, len(ids), BATCH_SIZE):
            count, _ = self._rows().filter(vector_id__in=ids[start : start + BATCH_SIZE]).delete()
            deleted += count
        return deleted

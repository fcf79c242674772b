"""A retrieval store in memory for tests: :class:`InMemoryRetrievalProvider`.

It is a real provider (it subclasses :class:`~rag.providers.base.BaseRetrievalProvider`,
key ``"in_memory"``), so code under test reaches it through the same knowledge bases and
steps as in production; only the vector database is replaced. Passages sit in a dict per
namespace, scored by cosine similarity, with the same validation and filter syntax as the
built-in stores. Instances share the dict (as they would share a database); the
``in_memory_retriever`` fixture of :mod:`automate_testing` empties it after each test. It
imports no Django model: it is usable without a database.

Also importable from :mod:`automate_testing.fakes`, as the same object.
"""

from __future__ import annotations

import math
import threading
from typing import Any, ClassVar

from automate_core.providers.errors import invalid_argument
from rag import filters as rag_filters
from rag.providers._common import check_documents, check_ids, check_query
from rag.providers.base import BaseRetrievalProvider

__all__ = ["InMemoryRetrievalProvider"]


class InMemoryRetrievalProvider(BaseRetrievalProvider):
    """Passages in a process-wide dict per ``namespace``; exact cosine search.

    Validation and filters are the built-in stores' own, so a test that passes here
    passes against ``local`` or ``pgvector`` for the same reasons.
    """

    key = "in_memory"
    display_name = "In memory (for tests)"

    #: namespace -> id -> passage; shared by every instance, cleared by :meth:`clear_all`.
    _stores: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @property
    def namespace(self) -> str:
        return str(self.config.get("namespace", ""))

    @property
    def documents(self) -> dict[str, dict[str, Any]]:
        """This namespace's passages by id (a copy: assert on it, do not write to it)."""
        with self._lock:
            return {k: dict(v) for k, v in self._stores.get(self.namespace, {}).items()}

    @classmethod
    def clear_all(cls) -> None:
        with cls._lock:
            cls._stores.clear()

    def index_documents(self, documents: list[dict]) -> int:
        checked = check_documents(self.key, documents)
        if not checked:
            return 0
        with self._lock:
            store = self._stores.setdefault(self.namespace, {})
            held = next(iter(store.values()), None)
            if held is not None and len(held["embedding"]) != len(checked[0]["embedding"]):
                raise invalid_argument(
                    None,
                    f"namespace {self.namespace!r} holds {len(held['embedding'])}-dimension "
                    f"vectors, these have {len(checked[0]['embedding'])}",
                    provider=self.key,
                )
            for doc in checked:
                store[doc["id"]] = doc
        return len(checked)

    def retrieve(
        self, query_embedding: list[float], top_k: int = 5, filters: dict | None = None
    ) -> list[dict]:
        query, conditions = check_query(self.key, query_embedding, top_k, filters)
        scored = []
        for doc in self.documents.values():
            if len(doc["embedding"]) != len(query):
                raise invalid_argument(
                    None,
                    f"the query has {len(query)} dimensions, namespace {self.namespace!r} "
                    f"holds {len(doc['embedding'])}: is the embedding model the same?",
                    provider=self.key,
                )
            if conditions and not rag_filters.matches(doc["metadata"], conditions):
                continue
            scored.append((_cosine(query, doc["embedding"]), doc))
        scored.sort(key=lambda pair: (-pair[0], pair[1]["id"]))
        return [
            {"id": d["id"], "score": s, "content": d["content"], "metadata": dict(d["metadata"])}
            for s, d in scored[:top_k]
        ]

    def delete(self, ids: list[str]) -> int:
        check_ids(self.key, ids)
        with self._lock:
            store = self._stores.get(self.namespace, {})
            return sum(store.pop(i, None) is not None for i in ids)


def _cosine(a: list[float], b: list[float]) -> float:
    norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / norms if norms else 0.0

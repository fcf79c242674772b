"""Searching a knowledge base: the one function the API, the admin and the step share."""

from __future__ import annotations

from typing import Any

from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument
from rag.models import KnowledgeBase

MAX_TOP_K = 50
MAX_QUERY_LENGTH = 2000


def get_knowledge_base(knowledge_base: KnowledgeBase | str) -> KnowledgeBase:
    if isinstance(knowledge_base, KnowledgeBase):
        return knowledge_base
    found = KnowledgeBase.objects.filter(slug=knowledge_base).first()
    if found is None:
        raise AutomateError(ErrorCodes.NOT_FOUND, f"no knowledge base with slug {knowledge_base!r}")
    return found


def search(
    knowledge_base: KnowledgeBase | str,
    query: str,
    top_k: int = 5,
    filters: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The ``top_k`` passages of ``knowledge_base`` most relevant to ``query``, best first.

    Each passage is ``{"id", "score", "content", "metadata", "source", "title"}``. The
    query is embedded as a query (not as a document) and, for stores that support it, also
    sent as text for hybrid search.
    """
    if not isinstance(query, str) or not query.strip():
        raise invalid_argument("query", "query must be a non-empty string")
    if len(query) > MAX_QUERY_LENGTH:
        raise invalid_argument("query", f"query is longer than {MAX_QUERY_LENGTH} characters")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise invalid_argument("top_k", f"top_k must be an integer from 1 to {MAX_TOP_K}")
    if filters is not None and not isinstance(filters, dict):
        raise invalid_argument("filters", "filters must be an object")
    kb = get_knowledge_base(knowledge_base)
    vector = kb.get_embedder().embed_query(query)
    retriever = kb.get_retriever()
    if retriever.supports_text_query:
        found = retriever.retrieve(vector, top_k=top_k, filters=filters, query_text=query)  # type: ignore[call-arg]
    else:
        found = retriever.retrieve(vector, top_k=top_k, filters=filters)
    passages = []
    for item in found:
        metadata = dict(item.get("metadata") or {})
        content = item.get("content")
        if content is None:
            content = metadata.get("content")
        metadata.pop("content", None)
        passages.append(
            {
                "id": item["id"],
                "score": float(item["score"]),
                "content": content,
                "metadata": metadata,
                "source": metadata.get("source"),
                "title": metadata.get("title"),
            }
        )
    return passages

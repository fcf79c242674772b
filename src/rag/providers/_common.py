"""Input checks shared by the built-in stores, so each fails the same clear way."""

from __future__ import annotations

import math
from typing import Any

from automate_core.providers.errors import invalid_argument
from rag.filters import Condition, parse

MAX_TOP_K = 1000


def check_top_k(provider: str, top_k: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise invalid_argument(
            None,
            f"top_k must be an integer from 1 to {MAX_TOP_K}, not {top_k!r}",
            provider=provider,
        )
    return top_k


def check_vector(provider: str, vector: Any, what: str = "query_embedding") -> list[float]:
    if not isinstance(vector, list | tuple) or not vector:
        raise invalid_argument(
            None, f"{what} must be a non-empty list of numbers", provider=provider
        )
    try:
        values = [float(v) for v in vector]
    except (TypeError, ValueError):
        raise invalid_argument(
            None, f"{what} must contain only numbers", provider=provider
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise invalid_argument(None, f"{what} contains NaN or infinity", provider=provider)
    return values


def check_query(
    provider: str, query_embedding: Any, top_k: int, filters: dict | None
) -> tuple[list[float], list[Condition]]:
    """The arguments of ``retrieve`` checked before any store is read: the query vector and
    the parsed filter conditions."""
    check_top_k(provider, top_k)
    return check_vector(provider, query_embedding), parse(filters)


def check_documents(provider: str, documents: Any) -> list[dict[str, Any]]:
    """Validate every document before writing any, so a bad batch writes nothing."""
    if not isinstance(documents, list):
        raise invalid_argument(None, "documents must be a list", provider=provider)
    checked: list[dict[str, Any]] = []
    dimensions: int | None = None
    for position, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise invalid_argument(
                None, f"document {position} is not an object", position=position, provider=provider
            )
        doc_id = doc.get("id")
        if not isinstance(doc_id, str) or not doc_id or len(doc_id) > 255:
            raise invalid_argument(
                None,
                f"document {position} needs a string id of 1-255 chars",
                position=position,
                provider=provider,
            )
        embedding = check_vector(provider, doc.get("embedding"), f"document {doc_id!r} embedding")
        if dimensions is None:
            dimensions = len(embedding)
        elif len(embedding) != dimensions:
            raise invalid_argument(
                None,
                f"document {doc_id!r} has {len(embedding)} dimensions, the batch has {dimensions}",
                id=doc_id,
                provider=provider,
            )
        metadata = doc.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise invalid_argument(
                None,
                f"document {doc_id!r} metadata must be an object",
                id=doc_id,
                provider=provider,
            )
        # Passage text travels both as "content" and in the metadata (the spec's providers
        # read it back from there); a store that keeps a content column keeps it once.
        content = doc.get("content")
        if content is None:
            content = metadata.get("content", "")
        metadata = {k: v for k, v in metadata.items() if k != "content"}
        checked.append(
            {"id": doc_id, "embedding": embedding, "content": str(content), "metadata": metadata}
        )
    # The same id twice in one batch: the last one wins, as it would over two batches.
    return list({doc["id"]: doc for doc in checked}.values())


def check_ids(provider: str, ids: Any) -> list[str]:
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise invalid_argument(None, "ids must be a list of non-empty strings", provider=provider)
    return ids

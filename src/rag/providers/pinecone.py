"""The ``pinecone`` store through the current ``pinecone`` SDK.

The index is addressed by its host (``Index(host=...)``), which skips the control-plane
lookup on every start. Upserts are split under Pinecone's request caps (1,000 vectors and
2 MB per request) by both count and encoded size, and each batch is sent on its own so a
failure names the batch. The passage text rides in the metadata as ``content`` (Pinecone
caps metadata at 40 KB per vector, far above a chunk).

Config: ``api_key`` (``secret://NAME``), ``host`` (the index's host from the console),
``namespace``, ``batch_size`` (200), ``timeout`` (30 s). Requests go through the
kernel's SSRF-safe client (purpose ``rag``), and the key only to ``host`` or the hosts
its grant names.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from django.core.exceptions import ImproperlyConfigured

from automate_core import secrets
from automate_core.http import safe_client
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument
from rag.embeddings._errors import from_status
from rag.http import PURPOSE, check_grant
from rag.providers._common import check_documents, check_ids, check_query
from rag.providers.base import BaseRetrievalProvider

MAX_VECTORS_PER_REQUEST = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_IDS_PER_DELETE = 1000
# Room left in a request for the envelope around the vectors.
_ENVELOPE_BYTES = 1024


def _guard(index: Any, timeout: float) -> None:
    """Send the SDK's requests through the kernel's SSRF-safe client (purpose ``rag``).

    The pinecone SDK takes no ``http_client``: it builds an ``httpx.Client`` of its own
    (``index._http._client``), which would connect to any address the host names and
    could be pointed at a proxy. It is swapped for :func:`automate_core.http.safe_client`
    with the same base URL and headers; if a new SDK moved that client, this refuses to
    run (fail closed) instead of calling out unguarded.
    """
    http = getattr(index, "_http", None)
    inner = getattr(http, "_client", None)
    if not isinstance(inner, httpx.Client):
        raise ImproperlyConfigured(
            "this pinecone SDK version does not expose the HTTP client django-automate "
            "guards (Index._http._client); pin a supported pinecone version"
        )
    http._client = safe_client(  # type: ignore[union-attr]
        base_url=str(inner.base_url),
        headers=dict(inner.headers),
        timeout=timeout,
        purpose=PURPOSE,
    )
    inner.close()


class PineconeRetrievalProvider(BaseRetrievalProvider):
    key = "pinecone"
    display_name = "Pinecone"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        if not self.config.get("api_key") or not self.config.get("host"):
            raise ImproperlyConfigured("the pinecone retrieval provider needs api_key and host")
        self.host = str(self.config["host"])
        self.namespace = str(self.config.get("namespace", ""))
        self.batch_size = int(self.config.get("batch_size", 200))
        if not 1 <= self.batch_size <= MAX_VECTORS_PER_REQUEST:
            raise ImproperlyConfigured(
                f"pinecone batch_size must be from 1 to {MAX_VECTORS_PER_REQUEST}"
            )
        self.timeout = float(self.config.get("timeout", 30.0))
        self._index: Any = None

    @property
    def index(self) -> Any:
        if self._index is None:
            from pinecone import Index

            reference = str(self.config["api_key"])
            if secrets.is_reference(reference):
                check_grant(reference, self.host)
            api_key = secrets.resolve(reference)
            index = Index(host=self.host, api_key=api_key, timeout=self.timeout)
            _guard(index, self.timeout)
            self._index = index
        return self._index

    def _call(self, what: str, function, **kwargs: Any) -> Any:
        from pinecone.errors.exceptions import (
            ApiError,
            PineconeConnectionError,
            PineconeTimeoutError,
        )

        try:
            return function(**kwargs)
        except ApiError as exc:
            raise from_status(self.key, exc.status_code, f"Pinecone {what}: {exc}") from exc
        except PineconeTimeoutError as exc:
            raise AutomateError(
                ErrorCodes.TIMEOUT, f"Pinecone {what} timed out", provider=self.key
            ) from exc
        except PineconeConnectionError as exc:
            raise AutomateError(
                ErrorCodes.UNAVAILABLE, f"Pinecone {what}: {exc}", provider=self.key
            ) from exc

    def retrieve(
        self,
        query_embedding: list[float],
        top_k: int = 5,
        filters: dict | None = None,
    ) -> list[dict]:
        # The same filter syntax: a bad filter is refused before the request.
        vector, _ = check_query(self.key, query_embedding, top_k, filters)
        kwargs: dict[str, Any] = {
            "vector": vector,
            "top_k": top_k,
            "include_metadata": True,
            "namespace": self.namespace,
        }
        if filters:
            kwargs["filter"] = filters
        response = self._call("query", self.index.query, **kwargs)
        passages = []
        for match in response.matches:
            metadata = dict(match.metadata or {})
            content = metadata.pop("content", None)
            passages.append(
                {
                    "id": match.id,
                    "score": float(match.score),
                    "content": content,
                    "metadata": metadata,
                }
            )
        return passages

    def batches(self, vectors: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """Split ``vectors`` so each request stays under the count and size caps."""
        batches: list[list[dict[str, Any]]] = []
        current: list[dict[str, Any]] = []
        size = _ENVELOPE_BYTES
        for vector in vectors:
            encoded = len(json.dumps(vector, separators=(",", ":")).encode()) + 1
            if current and (len(current) >= self.batch_size or size + encoded > MAX_REQUEST_BYTES):
                batches.append(current)
                current, size = [], _ENVELOPE_BYTES
            current.append(vector)
            size += encoded
        if current:
            batches.append(current)
        return batches

    def index_documents(self, documents: list[dict]) -> int:
        vectors = []
        for doc in check_documents(self.key, documents):
            metadata = {**doc["metadata"], "content": doc["content"]}
            if len(json.dumps(metadata).encode()) > MAX_METADATA_BYTES:
                raise invalid_argument(
                    None,
                    f"document {doc['id']!r}: metadata with its content is over Pinecone's "
                    "40 KB per vector; use smaller chunks",
                    id=doc["id"],
                    provider=self.key,
                )
            vectors.append({"id": doc["id"], "values": doc["embedding"], "metadata": metadata})
        written = 0
        for batch in self.batches(vectors):
            response = self._call(
                "upsert", self.index.upsert, vectors=batch, namespace=self.namespace
            )
            written += int(getattr(response, "upserted_count", len(batch)) or 0)
        return written

    def delete(self, ids: list[str]) -> int:
        check_ids(self.key, ids)
        for start in range(0, len(ids), MAX_IDS_PER_DELETE):
            self._call(
                "delete",
                self.index.delete,
                ids=ids[start : start + MAX_IDS_PER_DELETE],
                namespace=self.namespace,
            )
        # Pinecone does not say how many of the ids it held.
        return len(ids)

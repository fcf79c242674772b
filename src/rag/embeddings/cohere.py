"""Cohere embeddings through the ``cohere`` SDK's ``ClientV2``.

Cohere's v3+ models embed passages and queries differently: passages are sent with
``input_type="search_document"``, queries with ``"search_query"``; mixing them costs
recall. Config: ``api_key`` (``secret://NAME``), ``model`` ("embed-english-v3.0"),
``dimensions`` (1024; v4 models accept 256-1536 as ``output_dimension``), ``base_url``,
``timeout`` (30 s). Up to 96 texts go in one request.
"""

from __future__ import annotations

from typing import Any

import httpx
from django.core.exceptions import ImproperlyConfigured

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.embeddings._errors import check_texts, from_status
from rag.embeddings.base import BaseEmbeddingProvider
from rag.http import outbound_client

MAX_TEXTS_PER_REQUEST = 96


class CohereEmbeddingProvider(BaseEmbeddingProvider):
    key = "cohere"
    display_name = "Cohere"
    dimensions = 1024

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        if not self.api_key:
            raise ImproperlyConfigured("the cohere embedding provider needs config api_key")
        self.model = str(self.config.get("model", "embed-english-v3.0"))
        self._dimensions = int(self.config.get("dimensions", self.dimensions))
        self.timeout = float(self.config.get("timeout", 30.0))
        self._client: Any = None

    @property
    def vector_size(self) -> int:
        return self._dimensions

    @property
    def client(self) -> Any:
        if self._client is None:
            import cohere

            kwargs: dict[str, Any] = {
                "httpx_client": outbound_client(timeout=self.timeout),
                "timeout": self.timeout,
                # Retries live in one layer, the engine's, driven by the error's retryable.
                "max_retries": 0,
            }
            if self.config.get("base_url"):
                kwargs["base_url"] = str(self.config["base_url"])
            self._client = cohere.ClientV2(api_key=self.api_key, **kwargs)
        return self._client

    def _embed(self, texts: list[str], input_type: str) -> list[list[float]]:
        from cohere.core.api_error import ApiError

        check_texts(self.key, texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_TEXTS_PER_REQUEST):
            batch = texts[start : start + MAX_TEXTS_PER_REQUEST]
            kwargs: dict[str, Any] = {
                "texts": batch,
                "model": self.model,
                "input_type": input_type,
                "embedding_types": ["float"],
            }
            if self._dimensions != type(self).dimensions:
                kwargs["output_dimension"] = self._dimensions
            try:
                response = self.client.embed(**kwargs)
            except ApiError as exc:
                raise from_status(self.key, exc.status_code, f"Cohere: {exc.body}") from exc
            except httpx.TimeoutException as exc:
                raise AutomateError(
                    ErrorCodes.TIMEOUT, "Cohere timed out", provider=self.key
                ) from exc
            except httpx.TransportError as exc:
                raise AutomateError(
                    ErrorCodes.UNAVAILABLE, f"Cohere unreachable: {exc}", provider=self.key
                ) from exc
            got = list(response.embeddings.float_ or [])
            if len(got) != len(batch):
                raise AutomateError(
                    ErrorCodes.INTERNAL,
                    f"Cohere returned {len(got)} embeddings for {len(batch)} texts",
                    provider=self.key,
                )
            vectors.extend([float(v) for v in vector] for vector in got)
        return vectors

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts, "search_document")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(texts, "search_document")

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text], "search_query")[0]

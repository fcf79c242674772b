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

from rag.embeddings._hosted import HostedEmbeddingProvider, SDKErrors
from rag.http import outbound_client

MAX_TEXTS_PER_REQUEST = 96


class CohereEmbeddingProvider(HostedEmbeddingProvider):
    key = "cohere"
    display_name = "Cohere"
    default_host = "api.cohere.com"
    dimensions = 1024
    default_model = "embed-english-v3.0"
    max_texts_per_request = MAX_TEXTS_PER_REQUEST

    def _create_client(self) -> Any:
        import cohere

        kwargs: dict[str, Any] = {
            "httpx_client": outbound_client(timeout=self.timeout),
            "timeout": self.timeout,
            # Retries live in one layer, the engine's, driven by the error's retryable.
            "max_retries": 0,
        }
        if self.config.get("base_url"):
            kwargs["base_url"] = str(self.config["base_url"])
        return cohere.ClientV2(api_key=self.api_key, **kwargs)

    def _sdk_errors(self) -> SDKErrors:
        from cohere.core.api_error import ApiError

        return SDKErrors(
            status=ApiError, timeout=httpx.TimeoutException, connection=httpx.TransportError
        )

    def _status_detail(self, exc: Any) -> object:
        return exc.body

    def _request(self, batch: list[str], **options: Any) -> list[list[float]]:
        kwargs: dict[str, Any] = {
            "texts": batch,
            "model": self.model,
            "input_type": options["input_type"],
            "embedding_types": ["float"],
        }
        if self._custom_dimensions:
            kwargs["output_dimension"] = self._dimensions
        response = self.client.embed(**kwargs)
        return list(response.embeddings.float_ or [])

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._embed_batches(texts, input_type="search_document")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed_batches(texts, input_type="search_document")

    def embed_query(self, text: str) -> list[float]:
        return self._embed_batches([text], input_type="search_query")[0]

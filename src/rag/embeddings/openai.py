"""OpenAI embeddings (and any OpenAI-compatible endpoint) through the ``openai`` SDK.

Config: ``api_key`` (``secret://NAME``), ``model`` ("text-embedding-3-small"),
``dimensions`` (1536; the v3 models can shorten their vectors), ``base_url`` for a
compatible server, ``timeout`` (30 s). Up to 2,048 texts go in one request. The SDK's own
retries are off: the workflow engine owns retries, from the error's ``retryable``.
"""

from __future__ import annotations

from typing import Any

from rag.embeddings._hosted import HostedEmbeddingProvider, SDKErrors
from rag.http import outbound_client

MAX_TEXTS_PER_REQUEST = 2048


class OpenAIEmbeddingProvider(HostedEmbeddingProvider):
    key = "openai"
    display_name = "OpenAI"
    default_host = "api.openai.com"
    dimensions = 1536
    default_model = "text-embedding-3-small"
    max_texts_per_request = MAX_TEXTS_PER_REQUEST

    def _create_client(self) -> Any:
        import openai

        return openai.OpenAI(
            api_key=self.api_key,
            base_url=self.config.get("base_url") or None,
            timeout=self.timeout,
            max_retries=0,
            # openai 3 types this as its httpx2 fork and accepts an httpx.Client too.
            http_client=outbound_client(timeout=self.timeout),  # type: ignore[arg-type]
        )

    def _sdk_errors(self) -> SDKErrors:
        import openai

        return SDKErrors(
            status=openai.APIStatusError,
            timeout=openai.APITimeoutError,
            connection=openai.APIConnectionError,
        )

    def _status_detail(self, exc: Any) -> object:
        return exc.message

    def _request(self, batch: list[str], **options: Any) -> list[list[float]]:
        kwargs: dict[str, Any] = {"model": self.model, "input": batch}
        if self._custom_dimensions:
            kwargs["dimensions"] = self._dimensions
        response = self.client.embeddings.create(**kwargs)
        return [item.embedding for item in sorted(response.data, key=lambda item: item.index)]

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._embed_batches(texts)

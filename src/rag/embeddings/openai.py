"""OpenAI embeddings (and any OpenAI-compatible endpoint) through the ``openai`` SDK.

Config: ``api_key`` (``secret://NAME``), ``model`` ("text-embedding-3-small"),
``dimensions`` (1536; the v3 models can shorten their vectors), ``base_url`` for a
compatible server, ``timeout`` (30 s). Up to 2,048 texts go in one request. The SDK's own
retries are off: the workflow engine owns retries, from the error's ``retryable``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.embeddings._errors import check_texts, from_status
from rag.embeddings.base import BaseEmbeddingProvider
from rag.http import outbound_client

MAX_TEXTS_PER_REQUEST = 2048


class OpenAIEmbeddingProvider(BaseEmbeddingProvider):
    key = "openai"
    display_name = "OpenAI"
    dimensions = 1536

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        if not self.api_key:
            raise ImproperlyConfigured("the openai embedding provider needs config api_key")
        self.model = str(self.config.get("model", "text-embedding-3-small"))
        self._dimensions = int(self.config.get("dimensions", self.dimensions))
        self.timeout = float(self.config.get("timeout", 30.0))
        self._client: Any = None

    @property
    def vector_size(self) -> int:
        return self._dimensions

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=self.api_key,
                base_url=self.config.get("base_url") or None,
                timeout=self.timeout,
                max_retries=0,
                # openai 3 types this as its httpx2 fork and accepts an httpx.Client too.
                http_client=outbound_client(timeout=self.timeout),  # type: ignore[arg-type]
            )
        return self._client

    def embed(self, texts: list[str]) -> list[list[float]]:
        import openai

        check_texts(self.key, texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_TEXTS_PER_REQUEST):
            batch = texts[start : start + MAX_TEXTS_PER_REQUEST]
            kwargs: dict[str, Any] = {"model": self.model, "input": batch}
            if self._dimensions != type(self).dimensions:
                kwargs["dimensions"] = self._dimensions
            try:
                response = self.client.embeddings.create(**kwargs)
            except openai.APIStatusError as exc:
                raise from_status(self.key, exc.status_code, f"OpenAI: {exc.message}") from exc
            except openai.APITimeoutError as exc:
                raise AutomateError(
                    ErrorCodes.TIMEOUT, "OpenAI timed out", provider=self.key
                ) from exc
            except openai.APIConnectionError as exc:
                raise AutomateError(
                    ErrorCodes.UNAVAILABLE, f"OpenAI unreachable: {exc}", provider=self.key
                ) from exc
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch):
                raise AutomateError(
                    ErrorCodes.INTERNAL,
                    f"OpenAI returned {len(data)} embeddings for {len(batch)} texts",
                    provider=self.key,
                )
            vectors.extend([float(v) for v in item.embedding] for item in data)
        return vectors

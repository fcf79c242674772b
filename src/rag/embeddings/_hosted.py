"""What the hosted embedding providers (Cohere, OpenAI) share around their SDKs.

Both read the same config (``api_key``, ``model``, ``dimensions``, ``timeout``), build
their SDK client lazily, send texts in batches no larger than the service accepts, and
turn the SDK's failures into the one error tree so the workflow engine can decide retries
from ``retryable``. A subclass names its SDK's exceptions and sends one batch.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from django.core.exceptions import ImproperlyConfigured

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.embeddings._errors import check_texts, from_status
from rag.embeddings.base import BaseEmbeddingProvider

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


class SDKErrors(NamedTuple):
    """The exception types an SDK raises, checked in this order.

    ``status`` must carry ``status_code``; ``timeout`` is checked before ``connection``
    because SDKs make their timeout a kind of connection error.
    """

    status: ExceptionTypes
    timeout: ExceptionTypes
    connection: ExceptionTypes


class HostedEmbeddingProvider(BaseEmbeddingProvider):
    """An embedding service reached through its SDK; ``display_name`` names it in errors."""

    #: The model used when the config names none.
    default_model: ClassVar[str] = ""
    #: The most texts the service embeds in one request.
    max_texts_per_request: ClassVar[int] = 1

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        if not self.api_key:
            raise ImproperlyConfigured(f"the {self.key} embedding provider needs config api_key")
        self.model = str(self.config.get("model", self.default_model))
        self._dimensions = int(self.config.get("dimensions", self.dimensions))
        self.timeout = float(self.config.get("timeout", 30.0))
        self._client: Any = None

    @property
    def vector_size(self) -> int:
        return self._dimensions

    @property
    def _custom_dimensions(self) -> bool:
        """True when the config asks for vectors of a non-default size."""
        return self._dimensions != type(self).dimensions

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._create_client()
        return self._client

    def _embed_batches(self, texts: list[str], **options: Any) -> list[list[float]]:
        """Vectors for ``texts``, one request per batch; ``options`` go to each request."""
        errors = self._sdk_errors()  # imports the SDK before anything else happens
        check_texts(self.key, texts)
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.max_texts_per_request):
            batch = texts[start : start + self.max_texts_per_request]
            try:
                got = self._request(batch, **options)
            except errors.status as exc:
                detail = self._status_detail(exc)
                status = getattr(exc, "status_code", None)
                raise from_status(self.key, status, f"{self.display_name}: {detail}") from exc
            except errors.timeout as exc:
                raise AutomateError(
                    ErrorCodes.TIMEOUT, f"{self.display_name} timed out", provider=self.key
                ) from exc
            except errors.connection as exc:
                raise AutomateError(
                    ErrorCodes.UNAVAILABLE,
                    f"{self.display_name} unreachable: {exc}",
                    provider=self.key,
                ) from exc
            if len(got) != len(batch):
                raise AutomateError(
                    ErrorCodes.INTERNAL,
                    f"{self.display_name} returned {len(got)} embeddings for {len(batch)} texts",
                    provider=self.key,
                )
            vectors.extend([float(v) for v in vector] for vector in got)
        return vectors

    @abstractmethod
    def _create_client(self) -> Any:
        """The SDK client: our outbound HTTP client, ``self.timeout``, no SDK retries."""

    @abstractmethod
    def _sdk_errors(self) -> SDKErrors:
        """The SDK's exception types (importing the SDK)."""

    @abstractmethod
    def _status_detail(self, exc: BaseException) -> object:
        """What the service said in a failed response, for the error message."""

    @abstractmethod
    def _request(self, batch: list[str], **options: Any) -> Sequence[Sequence[float]]:
        """One request through :attr:`client`: one vector per text of ``batch``, in order."""

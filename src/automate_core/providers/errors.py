"""One error tree for every provider: connectors, LLMs, retrieval, embeddings, MCP.

``AutomateError`` carries a stable ``code`` from :class:`ErrorCodes`, the provider key and
whether a retry could succeed, so the workflow engine decides retries from data, not from
exception types. Configuration mistakes are :class:`django.core.exceptions.ImproperlyConfigured`
and stay outside this tree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCodes(StrEnum):
    """Stable error codes; their values are stored and shown in the admin and the API."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    TIMEOUT = "timeout"
    CONFIGURATION = "configuration"
    INTERNAL = "internal"


#: Codes for which a later attempt may succeed; used when ``retryable`` is not given.
RETRYABLE_BY_DEFAULT = frozenset(
    {ErrorCodes.RATE_LIMITED, ErrorCodes.UNAVAILABLE, ErrorCodes.TIMEOUT}
)


class AutomateError(Exception):
    """An error raised by a provider or by Django Automate itself.

    ``AutomateError(ErrorCodes.INVALID_ARGUMENT, "Unknown: frobnicate")`` is the whole call;
    ``provider`` names the provider key, ``retryable`` tells the engine whether to try
    again (by default: rate limits, unavailability and timeouts are retryable), and
    ``details`` holds JSON-serialisable context such as the failing input path.
    """

    def __init__(
        self,
        code: ErrorCodes | str,
        message: str | None = None,
        *,
        provider: str | None = None,
        retryable: bool | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.code = ErrorCodes(code)
        self.message = message or (type(self).__doc__ or "").strip().splitlines()[0] or self.code
        self.provider = provider
        self.retryable = self.code in RETRYABLE_BY_DEFAULT if retryable is None else retryable
        self.details = dict(details or {})
        super().__init__(self.message)

    def __str__(self) -> str:
        prefix = f"[{self.code}]" if self.provider is None else f"[{self.provider}:{self.code}]"
        return f"{prefix} {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.value!r}, message={self.message!r}, "
            f"provider={self.provider!r}, retryable={self.retryable!r})"
        )

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored on failed rows and returned by the API."""
        return {
            "code": self.code.value,
            "message": self.message,
            "provider": self.provider,
            "retryable": self.retryable,
            "details": self.details,
        }

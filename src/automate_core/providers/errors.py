"""One error tree for every provider: connectors, LLMs, retrieval, embeddings, MCP.

``AutomateError`` carries a stable ``code`` from :class:`ErrorCodes`, the provider key and
whether a retry could succeed, so the workflow engine decides retries from data, not from
exception types. Configuration mistakes are :class:`django.core.exceptions.ImproperlyConfigured`
and stay outside this tree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ValidationError


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


def invalid_argument(
    field: str | None, message: str, *, provider: str | None = None, **details: Any
) -> AutomateError:
    """A permanent INVALID_ARGUMENT error naming the input at fault.

    ``field`` (``"config.url"``, or ``None`` when no single field is at fault) is kept in
    ``details["field"]``, where the API and the admin look for it; ``details`` add
    JSON-serialisable context. The message is kept as given: callers already name the
    field in it the way their readers expect.
    """
    if field is not None:
        details = {"field": field, **details}
    return AutomateError(
        ErrorCodes.INVALID_ARGUMENT, message, provider=provider, retryable=False, details=details
    )


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """``(dotted path, message)`` for each problem pydantic found, in its order.

    The path is ``""`` for a problem with the whole object; the input values are left out,
    so a secret typed into the wrong field never reaches an error message.
    """
    return [
        (".".join(str(part) for part in error["loc"]), error["msg"])
        for error in exc.errors(include_input=False, include_url=False)
    ]


def invalid_config(
    exc: ValidationError, subject: str, *, provider: str | None = None
) -> AutomateError:
    """INVALID_ARGUMENT for a configuration pydantic refused, listing every problem.

    ``subject`` names what was configured (``"github"``, ``"LLM provider openai"``); the
    failing paths are in ``details["fields"]``.
    """
    problems = validation_problems(exc)
    listed = "; ".join(f"{path or '(config)'}: {message}" for path, message in problems)
    return invalid_argument(
        None,
        f"invalid configuration for {subject}: {listed}",
        provider=provider,
        fields=[path for path, _ in problems],
    )

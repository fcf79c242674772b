"""Maps an SDK's HTTP failure onto the one error tree, so retries are decided from data."""

from __future__ import annotations

from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

_BY_STATUS = {
    400: ErrorCodes.INVALID_ARGUMENT,
    401: ErrorCodes.UNAUTHENTICATED,
    403: ErrorCodes.PERMISSION_DENIED,
    404: ErrorCodes.NOT_FOUND,
    408: ErrorCodes.TIMEOUT,
    413: ErrorCodes.INVALID_ARGUMENT,
    422: ErrorCodes.INVALID_ARGUMENT,
    429: ErrorCodes.RATE_LIMITED,
}


def from_status(provider: str, status: int | None, message: str) -> AutomateError:
    if status is None or status >= 500:
        code = ErrorCodes.UNAVAILABLE
    else:
        code = _BY_STATUS.get(status, ErrorCodes.INVALID_ARGUMENT)
    return AutomateError(code, message, provider=provider, details={"status": status})


def check_texts(provider: str, texts: object) -> list[str]:
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise invalid_argument(None, "texts must be a list of strings", provider=provider)
    if any(not t.strip() for t in texts):
        raise invalid_argument(None, "texts must not contain empty strings", provider=provider)
    return texts

"""What the built-in API connectors (Slack, GitHub, Jira, HTTP) share: tokens, rate limits,
one client per connector, JSON.

* Credentials in their configs must be ``secret://NAME`` references: a connection profile
  is stored in the database and shown in the admin, so a pasted token is refused at
  validation time instead of being kept in clear.
* ``rate_limit: "50/min"`` throttles a connector through
  :class:`automate_core.throttling.RateLimiter` *before* a request is sent, so a burst of
  workflow runs waits (the run is retried with ``retry_after``) instead of tripping the
  service's own limit. The budget is shared by every connector instance that talks to the
  same service with the same credentials, in every process when the limiter storage is
  Redis.
* :class:`ApiConnector` builds the connector's client on the first request, so a secret is
  resolved only when an action needs it and a missing one fails before any HTTP.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx

from automate_connectors.base import Connector, normalize_http_error
from automate_core import secrets
from automate_core.providers.base import ProviderContext
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.redaction import redact
from automate_core.throttling import RateLimiter, parse_rate

__all__ = [
    "ApiConnector",
    "check_rate",
    "check_secret_reference",
    "check_service_url",
    "json_body",
    "retry_after_seconds",
    "service_error",
    "throttle",
]


def check_secret_reference(value: Any) -> Any:
    """A pydantic ``before`` validator: ``None`` or a ``secret://NAME`` reference.

    A connection profile resolves its references before it builds the connector, so a
    :class:`~automate_core.secrets.SecretValue` (the product of resolving one) is accepted
    too; a plain string, i.e. a token pasted into the config, is not.
    """
    if value is None or secrets.is_reference(value) or isinstance(value, secrets.SecretValue):
        return value
    raise ValueError("must be a secret://NAME reference, never the secret itself")


def check_rate(value: str | None) -> str | None:
    """A pydantic validator body: ``None`` or a rate RateLimiter understands ("50/min")."""
    if value is not None:
        parse_rate(value)  # raises ValueError naming the accepted forms
    return value


def check_service_url(
    example: str, *, allow_http: bool = False
) -> Callable[[str | None], str | None]:
    """A pydantic validator body for a service's root URL: ``None``, or https (or http
    when ``allow_http``), kept without its trailing slash so paths join it."""
    schemes = ("https://", "http://") if allow_http else ("https://",)
    kind = "an http(s)" if allow_http else "an https"

    def check(value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(schemes):
            raise ValueError(f"must be {kind} URL such as {example}")
        return value.rstrip("/")

    return check


def throttle(connector_key: str, rate: str | None, *identity: str | None) -> None:
    """Take one hit from the connector's budget; RateLimitExceeded (RATE_LIMITED) if spent.

    ``identity`` (base URL, credential reference...) scopes the budget: two Slack
    workspaces do not share one. It is hashed, so no reference reaches the storage keys.
    """
    if not rate:
        return
    scope = hashlib.sha256("\x00".join(part or "" for part in identity).encode()).hexdigest()
    limiter = RateLimiter(key=f"connector:{connector_key}:{scope[:16]}", rate=rate)
    try:
        limiter.hit()
    except AutomateError as exc:
        exc.provider = connector_key
        raise


def json_body(response: httpx.Response, *, provider: str) -> Any:
    """The response's JSON; INTERNAL naming the status when the body is not JSON."""
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        raise AutomateError(
            ErrorCodes.INTERNAL,
            f"unexpected {provider} response: HTTP {response.status_code} with a body "
            "that is not JSON",
            provider=provider,
        ) from None


def retry_after_seconds(headers: Any) -> int | None:
    """``Retry-After`` as whole seconds (the delta form; HTTP dates are ignored)."""
    value = headers.get("Retry-After") if headers is not None else None
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def service_error(
    exc: Exception,
    *,
    provider: str,
    messages: Callable[[dict[str, Any]], list[str]] | None = None,
    retry_after: Callable[[Any], int | None] | None = None,
) -> AutomateError:
    """:func:`normalize_http_error`, plus what the service's error answer says.

    ``retry_after(response)`` reads the seconds to wait into ``details`` (by default the
    ``Retry-After`` header); ``messages`` picks the service's own error messages out of its
    JSON body, and they are added to the error's message (shortened: a body can be long).
    """
    error = normalize_http_error(exc, provider=provider)
    response = getattr(exc, "response", None)
    if not isinstance(getattr(response, "status_code", None), int):
        return error
    if retry_after is None:
        seconds = retry_after_seconds(response.headers)  # type: ignore[union-attr]
    else:
        seconds = retry_after(response)
    if seconds is not None:
        error.details["retry_after"] = seconds
    # Redacted before the cut: a secret cut in two would leave its prefix unmasked.
    said = redact("; ".join(messages(_error_body(response))))[:500] if messages else ""
    if said:
        error.message = f"{error.message}: {said}"
        error.args = (error.message,)
    return error


def _error_body(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:
        return {}  # an HTML error page, or nothing at all
    return body if isinstance(body, dict) else {}


class ApiConnector(Connector):
    """A connector whose actions share one SSRF-safe client, built on the first request.

    Subclasses say how to authenticate (:meth:`client_credentials`) and what scopes their
    rate budget (:meth:`rate_scope`); their config has ``timeout`` and ``rate_limit``.
    """

    #: The subclass's config model; it has ``timeout`` and ``rate_limit`` fields.
    cfg: Any

    def __init__(self, config: dict[str, Any] | None = None, *, ctx: ProviderContext) -> None:
        super().__init__(config, ctx=ctx)
        self._client: httpx.Client | None = None

    def client_credentials(self) -> tuple[dict[str, str], httpx.Auth | None]:
        """Headers and auth every request carries; resolve the secrets here, not earlier.

        Raise CONFIGURATION when a credential the actions need is missing.
        """
        raise NotImplementedError

    def rate_scope(self) -> tuple[str | None, ...]:
        """What separates two budgets of one service (its URL, the credential reference)."""
        raise NotImplementedError

    @property
    def client(self) -> httpx.Client:
        """The client, built on first use (the credentials are resolved then)."""
        if self._client is None:
            headers, auth = self.client_credentials()
            client = self.http_client(timeout=self.cfg.timeout)
            client.headers.update(headers)
            if auth is not None:
                client.auth = auth
            self._client = client
        return self._client

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request after a hit on the rate budget; an error status raises."""
        client = self.client  # resolves the token: a configuration error comes before HTTP
        throttle(self.key, self.cfg.rate_limit, *self.rate_scope())
        response = client.request(method, path, **kwargs)
        response.raise_for_status()
        return response

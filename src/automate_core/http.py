"""The SSRF-safe HTTP client: every outbound request of Django Automate goes through here.

Built on httpx rather than a ready-made "SSRF filter" library because none we found does
all of: DNS pinning with SNI kept on the original name, re-checks of every redirect hop, a
streamed size cap that also bounds decompression, a total deadline, an async twin, and
allow-/deny-lists read from Django settings. httpx lets us swap only the socket layer
(see :mod:`automate_core.net`) and keep its HTTP, TLS and pooling.

    from automate_core.http import ssrf_safe_request, SSRFError

    response = ssrf_safe_request("GET", "https://api.example.com/data",
                                 credentials_ref="secret://my-api-key")

The rules, in order: only http/https, no ``user:pass@`` in URLs, ports from
``AUTOMATE["HTTP_ALLOWED_PORTS"]``, host names in ``HTTP_DENY_HOSTS`` refused; the host is
resolved once and EVERY address must be globally routable (after unwrapping IPv4-mapped,
-compatible, NAT64, 6to4 and Teredo forms) unless ``HTTP_ALLOW_NETWORKS`` /
``HTTP_ALLOW_HOSTS`` admit it; ``HTTP_DENY_NETWORKS`` and cloud metadata addresses are
always refused; the socket connects to a checked address. Redirects are re-checked hop by
hop and credentials are dropped when a redirect leaves the origin. Bodies are counted while
they stream, compressed and decompressed, and never trusted by their Content-Length.
"""

from __future__ import annotations

import functools
import logging
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any

import httpx
from asgiref.sync import sync_to_async

from automate_core import redaction, secrets
from automate_core._deadline import DEADLINE
from automate_core._httpbody import ResponseTooLarge, capped_response
from automate_core._netguard import AsyncGuardedBackend, GuardedBackend, SSRFError, check_url
from automate_core.conf import settings as automate_settings
from automate_core.observability import hooks
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument

__all__ = [
    "DEFAULT_MAX_SIZE",
    "AsyncSafeClient",
    "GrantedCredential",
    "ResponseTooLarge",
    "SSRFError",
    "SafeAsyncTransport",
    "SafeClient",
    "SafeTransport",
    "async_safe_client",
    "async_ssrf_safe_request",
    "is_credential_header",
    "redact_headers",
    "safe_client",
    "shared_safe_client",
    "ssrf_safe_request",
]

logger = logging.getLogger("automate.http")

# Defined in the private helpers, shown (and importable) here.
SSRFError.__module__ = ResponseTooLarge.__module__ = __name__

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}
# Dropped when a redirect hop changes origin (scheme, host, port); once dropped, for good.
# By substring, so vendor names (Ocp-Apim-Subscription-Key, X-Functions-Key, Api_Key,
# X-Hub-Signature) are caught without a list of every vendor's header.
_CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie"}
_CREDENTIAL_MARKERS = (
    "key",
    "token",
    "secret",
    "auth",
    "signature",
    "password",
    "session",
    "cookie",
)


# -- Transports ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _ssl_context(verify: Any) -> ssl.SSLContext:
    """Loading the CA bundle costs tens of milliseconds: share the default context."""
    return _default_ssl_context() if verify is True else httpx.create_ssl_context(verify=verify)


def _prepare(request: httpx.Request, purpose: str | None) -> None:
    check_url(request.url, purpose=purpose)
    accepted = {
        token.split(";")[0].strip().lower()
        for token in request.headers.get("accept-encoding", "").split(",")
    }
    if not accepted <= {"gzip", "x-gzip", "deflate", "identity", ""}:
        request.headers["accept-encoding"] = "gzip, deflate"


class SafeTransport(httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` whose sockets only reach checked addresses.

    Every request it sends (including each redirect hop httpx follows) passes
    :func:`~automate_core.net.check_url`; connections go through
    :class:`~automate_core._netguard.GuardedBackend`; bodies are capped at ``max_size``.
    """

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        verify: Any = True,
        purpose: str | None = None,
    ) -> None:
        import httpcore

        ssl_context = _ssl_context(verify)
        super().__init__(verify=ssl_context)
        self.max_size = max_size
        self.purpose = purpose
        # httpx has no argument for the network backend: replace the pool it built. The
        # net-guard tests (connect target == checked IP) fail if this stops taking effect.
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedBackend(purpose), retries=0
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with _reported(request.method, request.url), hooks.outbound(request) as call:
            _prepare(request, self.purpose)
            response = call.done(super().handle_request(request))
        response.request = request
        try:
            return capped_response(response, self.max_size, is_async=False)
        except BaseException:
            response.close()
            raise


class SafeAsyncTransport(httpx.AsyncHTTPTransport):
    """The async twin of :class:`SafeTransport`."""

    def __init__(
        self,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        verify: Any = True,
        purpose: str | None = None,
    ) -> None:
        import httpcore

        ssl_context = _ssl_context(verify)
        super().__init__(verify=ssl_context)
        self.max_size = max_size
        self.purpose = purpose
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=AsyncGuardedBackend(purpose), retries=0
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _reported(request.method, request.url), hooks.outbound(request) as call:
            _prepare(request, self.purpose)
            response = call.done(await super().handle_async_request(request))
        response.request = request
        try:
            return capped_response(response, self.max_size, is_async=True)
        except BaseException:
            await response.aclose()
            raise


# -- Clients ---------------------------------------------------------------------------


def _checked_reference(credentials_ref: str) -> str:
    if not secrets.is_reference(credentials_ref):
        raise invalid_argument(
            "credentials_ref",
            "credentials_ref must be a secret://NAME reference, never the secret itself",
        )
    return credentials_ref


def _authorization(value: str) -> str:
    """``Bearer VALUE`` unless the value already has a scheme (``Basic ...``, ``token ...``)."""
    value = str(value)
    return value if " " in value.strip() else f"Bearer {value}"


def _auth_headers(credentials_ref: str | None, *, host: str, purpose: str | None) -> dict[str, str]:
    """``secret://NAME`` -> an Authorization header, once the secret's grant allows ``host``.

    Project code (``purpose=None``) implicitly grants the URL it passes; any other purpose
    needs an ``AUTOMATE["SECRET_GRANTS"]`` entry (see :func:`automate_core.secrets.check_grant`).
    """
    if credentials_ref is None:
        return {}
    value = secrets.resolve_granted(
        _checked_reference(credentials_ref),
        use=purpose or "code",
        host=host,
        implicit_hosts=[host] if purpose is None else (),
    )
    return {"Authorization": _authorization(value)}


def _base_headers(headers: Mapping[str, str] | None) -> dict:
    merged = {"User-Agent": automate_settings.HTTP_USER_AGENT}
    merged.update(headers or {})
    return merged


class GrantedCredential(httpx.Auth):
    """Adds ``Authorization`` from a ``secret://`` reference to the requests its grant allows.

    The value is resolved once, when the client is built (a database-backed secret cannot
    be read from async code); every request's host is checked against the secret's grant
    before anything is sent, so a client whose requests reach a host the secret is not
    granted to raises :class:`~automate_core.secrets.SecretNotGranted` instead of
    connecting. ``base_host`` (the client's ``base_url`` host) is the implicit grant.
    """

    def __init__(self, credentials_ref: str, *, base_host: str, purpose: str | None) -> None:
        self.reference = _checked_reference(credentials_ref)
        self.base_host = base_host
        self.purpose = purpose
        if base_host:
            self._check(base_host)  # refused before the client is even built
        else:  # a signing secret is refused even before a host is known
            secrets.check_not_signing(self.reference, use=purpose or "code")
        self._value = _authorization(secrets.resolve(self.reference))

    def _check(self, host: str) -> None:
        # With no base_url, project code (no purpose) grants each request's own host.
        own = [host] if self.purpose is None else []
        implicit = [self.base_host] if self.base_host else own
        secrets.check_grant(
            self.reference, use=self.purpose or "code", host=host, implicit_hosts=implicit
        )

    def auth_flow(self, request: httpx.Request) -> Any:
        self._check(request.url.host)
        request.headers["Authorization"] = self._value
        yield request


class _StripsCredentials:
    """Drops credential headers when httpx follows a redirect off the origin.

    httpx itself drops only ``Authorization``; this also drops cookies and headers such as
    ``X-Api-Key``. It extends httpx's redirect hook (``_redirect_headers``);
    ``test_safe_client__cross_origin_redirect_drops_credentials`` guards it.
    """

    def _redirect_headers(self, request: httpx.Request, url: httpx.URL, method: str) -> Any:
        headers = super()._redirect_headers(request, url, method)  # type: ignore[misc]
        if _origin(url) != _origin(request.url):
            for name in list(headers.keys()):
                if _is_credential(name):
                    del headers[name]
        return headers


class SafeClient(_StripsCredentials, httpx.Client):
    """The ``httpx.Client`` that :func:`safe_client` returns."""


class AsyncSafeClient(_StripsCredentials, httpx.AsyncClient):
    """The ``httpx.AsyncClient`` that :func:`async_safe_client` returns."""


def _credential(
    credentials_ref: str | None, base_url: str, purpose: str | None
) -> GrantedCredential | None:
    if credentials_ref is None:
        return None
    base_host = httpx.URL(base_url).host if base_url else ""
    return GrantedCredential(credentials_ref, base_host=base_host, purpose=purpose)


def safe_client(
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    credentials_ref: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    purpose: str | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` that applies the SSRF rules to every request it sends.

    Proxies from the environment are ignored (a proxy would connect on our behalf, past
    the address checks). Redirects are followed only when a request asks for it
    (``follow_redirects=True``); then every hop is checked and credentials are dropped
    when a hop leaves the origin. ``timeout`` has httpx's per-operation meaning here; use
    :func:`ssrf_safe_request` for a total deadline. ``purpose`` picks the allow-list
    (``AUTOMATE["HTTP_ALLOW_FOR"]``); ``credentials_ref`` is sent only to the hosts its
    grant allows (``base_url``'s host, for a secret with no grant: :class:`GrantedCredential`).
    """
    return SafeClient(
        base_url=base_url,
        headers=_base_headers(headers),
        auth=_credential(credentials_ref, base_url, purpose),
        timeout=timeout,
        transport=SafeTransport(max_size=max_size, purpose=purpose),
        trust_env=False,
        max_redirects=5,
    )


def async_safe_client(
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    credentials_ref: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    purpose: str | None = None,
) -> httpx.AsyncClient:
    """The async twin of :func:`safe_client` (resolve ``credentials_ref`` outside the loop:
    a database-backed secret cannot be read from async code)."""
    return AsyncSafeClient(
        base_url=base_url,
        headers=_base_headers(headers),
        auth=_credential(credentials_ref, base_url, purpose),
        timeout=timeout,
        transport=SafeAsyncTransport(max_size=max_size, purpose=purpose),
        trust_env=False,
        max_redirects=5,
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = 443 if url.scheme == "https" else 80
    return (url.scheme, url.host, url.port or default)


def is_credential_header(name: str) -> bool:
    """True for a header name that may carry a credential: ``Authorization``, ``Cookie``,
    or a name containing key, token, secret, auth, signature, password or session
    (``X-Api-Key``, ``Ocp-Apim-Subscription-Key``, ``X-Hub-Signature-256``...)."""
    lowered = name.lower()
    return lowered in _CREDENTIAL_HEADERS or any(m in lowered for m in _CREDENTIAL_MARKERS)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` with the value of every credential header masked (for storing, showing)."""
    return {
        name: redaction.MASK if is_credential_header(name) else redaction.redact(str(value))
        for name, value in headers.items()
    }


_is_credential = is_credential_header


def _next_hop(
    client: httpx.Client | httpx.AsyncClient, request: httpx.Request, response: httpx.Response
) -> httpx.Request:
    """The request for a redirect: method rules of RFC 9110, credentials only same-origin."""
    location = response.headers.get("location", "")
    try:
        url = request.url.join(location)
    except httpx.InvalidURL as exc:
        raise SSRFError(f"the redirect target cannot be parsed: {exc}", reason="url") from None
    if url.fragment == "" and request.url.fragment:
        url = url.copy_with(fragment=request.url.fragment)
    check_url(url, purpose=getattr(client, "_automate_purpose", None))
    method, content = request.method, request.content
    see_other = response.status_code == 303 and method != "HEAD"
    if see_other or (response.status_code in (301, 302) and method == "POST"):
        method, content = "GET", b""
    headers = httpx.Headers(request.headers)
    headers.pop("host", None)
    if not content:
        for name in ("content-length", "content-type", "transfer-encoding"):
            headers.pop(name, None)
    if _origin(url) != _origin(request.url):
        for name in list(headers.keys()):
            if _is_credential(name):
                del headers[name]
    return client.build_request(method, url, headers=headers, content=content or None)


def _followed(
    client: httpx.Client | httpx.AsyncClient,
    request: httpx.Request,
    response: httpx.Response,
    hop: int,
    allow_redirects: bool,
    max_redirects: int,
) -> httpx.Request | None:
    """The next hop's request when ``response`` is a redirect to follow, else ``None``.

    The redirect rules of both :func:`ssrf_safe_request` and its async twin, in one place.
    """
    if not allow_redirects or response.status_code not in _REDIRECTS:
        return None
    if hop == max_redirects:
        raise SSRFError(f"more than {max_redirects} redirects", reason="redirects")
    if not response.headers.get("location"):
        return None
    return _next_hop(client, request, response)


@contextmanager
def _reported(method: str, url: str | httpx.URL) -> Iterator[None]:
    """Scrub secrets from whatever escapes, and log what the SSRF rules refused."""
    try:
        yield
    except Exception as exc:
        redaction.scrub_exception(exc)
        if isinstance(exc, SSRFError):
            _log_refusal(exc, method, url)
        raise


def _log_refusal(exc: SSRFError, method: str, url: str | httpx.URL) -> None:
    if getattr(exc, "_automate_logged", False):
        return
    exc._automate_logged = True  # type: ignore[attr-defined]
    hooks.refused(exc, method, url)
    logger.warning(
        "SSRF protection refused %s %s: %s",
        method,
        redaction.redact(str(url)),
        exc.message,
        extra={"reason": exc.details.get("reason")},
    )


@contextmanager
def _deadline(timeout: float) -> Iterator[None]:
    token = DEADLINE.set(time.monotonic() + timeout)
    try:
        yield
    except httpx.TimeoutException as exc:
        raise AutomateError(
            ErrorCodes.TIMEOUT, f"no complete response within {timeout} s: {exc}"
        ) from None
    finally:
        DEADLINE.reset(token)


def _parse(url: str | httpx.URL, purpose: str | None = None) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise SSRFError(f"the URL cannot be parsed safely: {exc}", reason="url") from None
    check_url(parsed, purpose=purpose)
    return parsed


def _finish(response: httpx.Response, body: bytes) -> httpx.Response:
    headers = httpx.Headers(response.headers)
    headers["content-length"] = str(len(body))
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=body,
        request=response.request,
        extensions={k: v for k, v in response.extensions.items() if k != "network_stream"},
    )


def ssrf_safe_request(
    method: str,
    url: str,
    *,
    credentials_ref: str | None = None,
    timeout: float = 30,
    max_size: int = DEFAULT_MAX_SIZE,
    headers: Mapping[str, str] | None = None,
    params: Any = None,
    json: Any = None,
    data: Any = None,
    allow_redirects: bool = True,
    max_redirects: int = 5,
    purpose: str | None = None,
    client: SafeClient | None = None,
) -> httpx.Response:
    """Send one request under the SSRF rules and return the fully read response.

    ``timeout`` is a total deadline for the whole call (connects, redirects and body);
    ``max_size`` caps the body both as received and after decompression. Blocked targets
    raise :class:`SSRFError`; a missed deadline raises an ``AutomateError`` with code
    TIMEOUT; other transport failures raise ``httpx`` errors. HTTP error statuses are
    returned, not raised (call ``raise_for_status()``).

    ``purpose`` (``"http_request"``, ``"connection"``, ... see :mod:`automate_core.net`)
    picks the allow-list of ``AUTOMATE["HTTP_ALLOW_FOR"]`` and is the use a
    ``credentials_ref`` must be granted for; with no purpose (project code) the URL's
    host is the secret's implicit grant. A secret not granted for the URL's host raises
    :class:`~automate_core.secrets.SecretNotGranted` before anything is sent.

    ``client`` (from :func:`shared_safe_client`, for the same ``purpose`` and ``max_size``)
    sends the request over that client's kept-alive connections instead of a client made
    for this call alone; the rules are the same, since they live in its transport.
    """
    with _reported(method, url):
        return _send(
            method,
            url,
            credentials_ref=credentials_ref,
            timeout=timeout,
            max_size=max_size,
            headers=headers,
            params=params,
            json=json,
            data=data,
            allow_redirects=allow_redirects,
            max_redirects=max_redirects,
            purpose=purpose,
            client=client,
        )


def _send(
    method: str,
    url: str,
    *,
    credentials_ref: str | None,
    timeout: float,
    max_size: int,
    headers: Mapping[str, str] | None,
    params: Any,
    json: Any,
    data: Any,
    allow_redirects: bool,
    max_redirects: int,
    purpose: str | None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    target = _parse(url, purpose)
    auth = _auth_headers(credentials_ref, host=target.host, purpose=purpose)
    if client is None:
        client = httpx.Client(
            timeout=timeout,
            transport=SafeTransport(max_size=max_size, purpose=purpose),
            trust_env=False,
        )
        client._automate_purpose = purpose  # type: ignore[attr-defined]
        closing: Any = client
    else:
        _check_shared(client, purpose, max_size)
        closing = nullcontext()  # shared: its connections stay open for the next call
    with closing, _deadline(timeout):
        request = client.build_request(
            method,
            target,
            headers={**_base_headers(headers), **auth},
            params=params,
            json=json,
            data=data,
            timeout=timeout,
        )
        for hop in range(max_redirects + 1):
            response = client.send(request, stream=True)
            try:
                follow = _followed(client, request, response, hop, allow_redirects, max_redirects)
                if follow is None:
                    return _finish(response, response.read())
                request = follow
            finally:
                response.close()
    raise AssertionError("unreachable")  # pragma: no cover


_shared: dict[tuple[str | None, int], SafeClient] = {}
_shared_lock = threading.Lock()


def shared_safe_client(*, purpose: str | None, max_size: int = DEFAULT_MAX_SIZE) -> SafeClient:
    """This process's client for :func:`ssrf_safe_request` calls of one ``purpose`` and
    ``max_size``: the same SSRF-safe transport (every request checked, every connection
    made by the guarded backend, bodies capped), its connections kept alive between calls.
    Carries no credentials and follows no redirect by itself; thread-safe."""
    key = (purpose, max_size)
    with _shared_lock:
        client = _shared.get(key)
        if client is None:
            client = SafeClient(
                transport=SafeTransport(max_size=max_size, purpose=purpose), trust_env=False
            )
            client._automate_purpose = purpose  # type: ignore[attr-defined]
            _shared[key] = client
        return client


def _check_shared(client: httpx.Client, purpose: str | None, max_size: int) -> None:
    transport = client._transport
    if not (
        isinstance(transport, SafeTransport)
        and transport.purpose == purpose
        and transport.max_size == max_size
    ):
        raise invalid_argument(
            None,
            "the client passed to ssrf_safe_request must come from shared_safe_client() "
            "with the same purpose and max_size",
        )


async def async_ssrf_safe_request(
    method: str,
    url: str,
    *,
    credentials_ref: str | None = None,
    timeout: float = 30,
    max_size: int = DEFAULT_MAX_SIZE,
    headers: Mapping[str, str] | None = None,
    params: Any = None,
    json: Any = None,
    data: Any = None,
    allow_redirects: bool = True,
    max_redirects: int = 5,
    purpose: str | None = None,
) -> httpx.Response:
    """The async twin of :func:`ssrf_safe_request`, with the same rules and arguments."""
    with _reported(method, url):
        return await _async_send(
            method,
            url,
            credentials_ref=credentials_ref,
            timeout=timeout,
            max_size=max_size,
            headers=headers,
            params=params,
            json=json,
            data=data,
            allow_redirects=allow_redirects,
            max_redirects=max_redirects,
            purpose=purpose,
        )


async def _async_send(
    method: str,
    url: str,
    *,
    credentials_ref: str | None,
    timeout: float,
    max_size: int,
    headers: Mapping[str, str] | None,
    params: Any,
    json: Any,
    data: Any,
    allow_redirects: bool,
    max_redirects: int,
    purpose: str | None,
) -> httpx.Response:
    target = _parse(url, purpose)
    # Secret backends (and the grant check) may query the database: off the event loop.
    auth = await sync_to_async(_auth_headers)(credentials_ref, host=target.host, purpose=purpose)
    base_headers = {**_base_headers(headers), **auth}
    client = httpx.AsyncClient(
        timeout=timeout,
        transport=SafeAsyncTransport(max_size=max_size, purpose=purpose),
        trust_env=False,
    )
    client._automate_purpose = purpose  # type: ignore[attr-defined]
    async with client:
        with _deadline(timeout):
            request = client.build_request(
                method,
                target,
                headers=base_headers,
                params=params,
                json=json,
                data=data,
            )
            for hop in range(max_redirects + 1):
                response = await client.send(request, stream=True)
                try:
                    follow = _followed(
                        client, request, response, hop, allow_redirects, max_redirects
                    )
                    if follow is None:
                        return _finish(response, await response.aread())
                    request = follow
                finally:
                    await response.aclose()
    raise AssertionError("unreachable")  # pragma: no cover

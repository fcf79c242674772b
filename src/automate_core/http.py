"""The SSRF-safe HTTP client: every outbound request of Django Automate goes through here.

Built on httpx rather than a ready-made "SSRF filter" library because none we found does
all of: DNS pinning with SNI kept on the original name, re-checks of every redirect hop, a
streamed size cap that also bounds decompression, a total deadline, an async twin, and
allow-/deny-lists read from Django settings. httpx lets us swap only the socket layer
(see :mod:`automate_core._netguard`) and keep its HTTP, TLS and pooling.

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
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from asgiref.sync import sync_to_async

from automate_core._netguard import (
    DEADLINE,
    AsyncGuardedBackend,
    GuardedBackend,
    SSRFError,
    check_url,
)
from automate_core.conf import settings as automate_settings
from automate_core.providers.errors import AutomateError, ErrorCodes

__all__ = [
    "DEFAULT_MAX_SIZE",
    "ResponseTooLarge",
    "SSRFError",
    "SafeAsyncTransport",
    "SafeTransport",
    "async_safe_client",
    "async_ssrf_safe_request",
    "safe_client",
    "ssrf_safe_request",
]

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
_CHUNK = 64 * 1024
_DECODABLE = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_REDIRECTS = {301, 302, 303, 307, 308}
# Dropped when a redirect leaves the origin (scheme, host and port) of the first request.
_CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie"}
_CREDENTIAL_MARKERS = ("token", "secret", "api-key", "apikey", "auth", "session", "password")


class ResponseTooLarge(SSRFError):
    """The response body is larger than ``max_size`` (compressed or decompressed)."""

    def __init__(self, max_size: int, url: str | None = None) -> None:
        super().__init__(
            f"the response body exceeds max_size ({max_size} bytes)", reason="too_large", url=url
        )


# -- Bodies: counted and decoded with a bound -----------------------------------------


def _encodings(headers: httpx.Headers) -> list[str]:
    values = [
        token.strip().lower()
        for header in headers.get_list("content-encoding")
        for token in header.split(",")
    ]
    encodings = [value for value in values if value and value != "identity"]
    unknown = [value for value in encodings if value not in _DECODABLE]
    if unknown:
        raise httpx.DecodingError(
            f"unsupported Content-Encoding {', '.join(unknown)} (the client asks for gzip, deflate)"
        )
    return encodings


def _through(data: bytes, decoders: list[Any]) -> Iterator[bytes]:
    """Decompress with at most ``_CHUNK`` bytes of output per step: a bomb cannot balloon."""
    if not decoders:
        if data:
            yield data
        return
    first, rest = decoders[0], decoders[1:]
    try:
        while True:
            out = first.decompress(data, _CHUNK)
            data = first.unconsumed_tail
            yield from _through(out, rest)
            if not data and len(out) < _CHUNK:
                return
    except zlib.error as exc:
        message = f"the response body is not valid compressed data: {exc}"
        raise httpx.DecodingError(message) from None


def _flush(decoders: list[Any]) -> Iterator[bytes]:
    for index, decoder in enumerate(decoders):
        yield from _through(decoder.flush(), decoders[index + 1 :])


class _Budget:
    """Counts raw and decoded bytes; either one past ``max_size`` raises ResponseTooLarge."""

    def __init__(self, response: httpx.Response, encodings: list[str], max_size: int) -> None:
        self.url = str(response.request.url)
        self.max_size = max_size
        self.raw = self.decoded = 0
        self.decoders = [zlib.decompressobj(_DECODABLE[e]) for e in reversed(encodings)]

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self.raw += len(chunk)
        if self.raw > self.max_size:
            raise ResponseTooLarge(self.max_size, self.url)
        yield from self._count(_through(chunk, self.decoders))

    def finish(self) -> Iterator[bytes]:
        yield from self._count(_flush(self.decoders))

    def _count(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.decoded += len(piece)
            if self.decoded > self.max_size:
                raise ResponseTooLarge(self.max_size, self.url)
            yield piece


class _CappedStream(httpx.SyncByteStream):
    def __init__(self, response: httpx.Response, encodings: list[str], max_size: int) -> None:
        self._response = response
        self._budget = _Budget(response, encodings, max_size)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._response.iter_raw():
            yield from self._budget.feed(chunk)
        yield from self._budget.finish()

    def close(self) -> None:
        self._response.close()


class _AsyncCappedStream(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, encodings: list[str], max_size: int) -> None:
        self._response = response
        self._budget = _Budget(response, encodings, max_size)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Decompression works on bytes already in memory, at most _CHUNK out per step.
        async for chunk in self._response.aiter_raw():
            for piece in self._budget.feed(chunk):
                yield piece
        for piece in self._budget.finish():
            yield piece

    async def aclose(self) -> None:
        await self._response.aclose()


def _capped_response(response: httpx.Response, max_size: int, *, is_async: bool) -> httpx.Response:
    """The same response with a decoded, size-checked stream (and no Content-Encoding)."""
    url = str(response.request.url)
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_size:
        raise ResponseTooLarge(max_size, url)
    encodings = _encodings(response.headers)
    headers = httpx.Headers(response.headers)
    if encodings:
        del headers["content-encoding"]
        headers.pop("content-length", None)
    stream_cls = _AsyncCappedStream if is_async else _CappedStream
    return httpx.Response(
        response.status_code,
        headers=headers,
        stream=stream_cls(response, encodings, max_size),
        request=response.request,
        extensions=response.extensions,
    )


# -- Transports ------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _ssl_context(verify: Any) -> ssl.SSLContext:
    """Loading the CA bundle costs tens of milliseconds: share the default context."""
    return _default_ssl_context() if verify is True else httpx.create_ssl_context(verify=verify)


def _prepare(request: httpx.Request) -> None:
    check_url(request.url)
    accepted = {
        token.split(";")[0].strip().lower()
        for token in request.headers.get("accept-encoding", "").split(",")
    }
    if not accepted <= {"gzip", "x-gzip", "deflate", "identity", ""}:
        request.headers["accept-encoding"] = "gzip, deflate"


class SafeTransport(httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` whose sockets only reach checked addresses.

    Every request it sends (including each redirect hop httpx follows) passes
    :func:`~automate_core._netguard.check_url`; connections go through
    :class:`~automate_core._netguard.GuardedBackend`; bodies are capped at ``max_size``.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE, verify: Any = True) -> None:
        import httpcore

        ssl_context = _ssl_context(verify)
        super().__init__(verify=ssl_context)
        self.max_size = max_size
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=GuardedBackend(), retries=0
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _prepare(request)
        response = super().handle_request(request)
        response.request = request
        try:
            return _capped_response(response, self.max_size, is_async=False)
        except BaseException:
            response.close()
            raise


class SafeAsyncTransport(httpx.AsyncHTTPTransport):
    """The async twin of :class:`SafeTransport`."""

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE, verify: Any = True) -> None:
        import httpcore

        ssl_context = _ssl_context(verify)
        super().__init__(verify=ssl_context)
        self.max_size = max_size
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, network_backend=AsyncGuardedBackend(), retries=0
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _prepare(request)
        response = await super().handle_async_request(request)
        response.request = request
        try:
            return _capped_response(response, self.max_size, is_async=True)
        except BaseException:
            await response.aclose()
            raise


# -- Clients ---------------------------------------------------------------------------


def _auth_headers(credentials_ref: str | None) -> dict[str, str]:
    """``secret://NAME`` -> an Authorization header (``Bearer VALUE`` unless it has a scheme)."""
    if credentials_ref is None:
        return {}
    from automate_core import secrets

    if not secrets.is_reference(credentials_ref):
        raise AutomateError(
            ErrorCodes.INVALID_ARGUMENT,
            "credentials_ref must be a secret://NAME reference, never the secret itself",
        )
    value = str(secrets.resolve(credentials_ref))
    return {"Authorization": value if " " in value.strip() else f"Bearer {value}"}


def _base_headers(headers: Mapping[str, str] | None, credentials_ref: str | None) -> dict:
    merged = {"User-Agent": automate_settings.HTTP_USER_AGENT}
    merged.update(headers or {})
    merged.update(_auth_headers(credentials_ref))
    return merged


def safe_client(
    *,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    credentials_ref: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> httpx.Client:
    """An ``httpx.Client`` that applies the SSRF rules to every request it sends.

    Proxies from the environment are ignored (a proxy would connect on our behalf, past
    the address checks). Redirects are not followed unless a request asks for it; when
    followed, httpx drops ``Authorization`` on a cross-origin hop and each hop is checked.
    """
    return httpx.Client(
        base_url=base_url,
        headers=_base_headers(headers, credentials_ref),
        timeout=timeout,
        transport=SafeTransport(max_size=max_size),
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
) -> httpx.AsyncClient:
    """The async twin of :func:`safe_client`."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers=_base_headers(headers, credentials_ref),
        timeout=timeout,
        transport=SafeAsyncTransport(max_size=max_size),
        trust_env=False,
        max_redirects=5,
    )


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = 443 if url.scheme == "https" else 80
    return (url.scheme, url.host, url.port or default)


def _is_credential(name: str) -> bool:
    lowered = name.lower()
    return lowered in _CREDENTIAL_HEADERS or any(m in lowered for m in _CREDENTIAL_MARKERS)


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
    check_url(url)
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


def _parse(url: str | httpx.URL) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise SSRFError(f"the URL cannot be parsed safely: {exc}", reason="url") from None
    check_url(parsed)
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
) -> httpx.Response:
    """Send one request under the SSRF rules and return the fully read response.

    ``timeout`` is a total deadline for the whole call (connects, redirects and body);
    ``max_size`` caps the body both as received and after decompression. Blocked targets
    raise :class:`SSRFError`; a missed deadline raises an ``AutomateError`` with code
    TIMEOUT; other transport failures raise ``httpx`` errors. HTTP error statuses are
    returned, not raised (call ``raise_for_status()``).
    """
    target = _parse(url)
    client = httpx.Client(
        timeout=timeout, transport=SafeTransport(max_size=max_size), trust_env=False
    )
    with client, _deadline(timeout):
        request = client.build_request(
            method,
            target,
            headers=_base_headers(headers, credentials_ref),
            params=params,
            json=json,
            data=data,
        )
        for hop in range(max_redirects + 1):
            response = client.send(request, stream=True)
            try:
                if allow_redirects and response.status_code in _REDIRECTS:
                    if hop == max_redirects:
                        raise SSRFError(f"more than {max_redirects} redirects", reason="redirects")
                    if response.headers.get("location"):
                        request = _next_hop(client, request, response)
                        continue
                body = response.read()
                return _finish(response, body)
            finally:
                response.close()
    raise AssertionError("unreachable")  # pragma: no cover


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
) -> httpx.Response:
    """The async twin of :func:`ssrf_safe_request`, with the same rules and arguments."""
    target = _parse(url)
    client = httpx.AsyncClient(
        timeout=timeout, transport=SafeAsyncTransport(max_size=max_size), trust_env=False
    )
    # Secret backends may query the database: resolve them off the event loop.
    base_headers = await sync_to_async(_base_headers)(headers, credentials_ref)
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
                    if allow_redirects and response.status_code in _REDIRECTS:
                        if hop == max_redirects:
                            raise SSRFError(
                                f"more than {max_redirects} redirects", reason="redirects"
                            )
                        if response.headers.get("location"):
                            request = _next_hop(client, request, response)
                            continue
                    body = await response.aread()
                    return _finish(response, body)
                finally:
                    await response.aclose()
    raise AssertionError("unreachable")  # pragma: no cover

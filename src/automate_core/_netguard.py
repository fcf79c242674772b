"""Where the SSRF-safe client decides which addresses it may reach (package-private).

Two layers, so that a check can never be skipped by a second DNS lookup:

* :func:`check_url` runs on every request and every redirect hop before anything is sent:
  scheme, userinfo, port, the deny-list of host names, and IP literals in any notation;
* :class:`GuardedBackend` / :class:`AsyncGuardedBackend` are httpcore network backends. Their
  ``connect_tcp`` resolves the host name once, checks EVERY address it got, and connects to
  one of the checked addresses (DNS pinning). httpcore keeps using the original name for the
  ``Host`` header, TLS SNI and the certificate check, because only the socket layer changes.
  :class:`AsyncGuardedConnect` is that connect for any httpcore flavour: the MCP SDK's
  httpcore2 backend (``automate.mcp.transport``) is built on it too.

Other apps reach these through :mod:`automate_core.net`, not this module.

Mocking at the transport (``respx``) replaces the connection pool's ``handle_request``, so
such tests never reach :func:`resolve_checked` and never do DNS.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import httpcore

from automate_core._deadline import AsyncDeadlineStream, DeadlineStream, remaining
from automate_core.conf import settings as automate_settings
from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_core.redaction import redact

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})

# Cloud metadata endpoints stay blocked even when an allow-list would admit their network:
# a credential leak from them is the classic SSRF payoff.
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "169.254.170.2/32",  # AWS ECS task metadata
        "169.254.169.253/32",  # AWS DNS
        "100.100.100.200/32",  # Alibaba Cloud
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
    )
)
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})

# Not globally routable, spelled out so the answer does not depend on the Python patch
# release's idea of ``is_global``.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",
        "192.0.0.0/24",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "64:ff9b:1::/48",
        "fc00::/7",
        "fec0::/10",
        "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class SSRFError(AutomateError):
    """The request was refused to protect internal services (SSRF protection)."""

    def __init__(self, message: str, *, reason: str = "blocked", url: str | None = None) -> None:
        details: dict[str, Any] = {"reason": reason}
        if url is not None:
            details["url"] = redact(url)
        super().__init__(
            ErrorCodes.PERMISSION_DENIED, redact(message), retryable=False, details=details
        )


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address hidden in an IPv6 one (mapped, compatible, NAT64, 6to4), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if int(ip) >> 32 == 0 and int(ip) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
            return ipaddress.IPv4Address(int(ip))
        if ip.teredo is not None:
            return ip.teredo[1]
    return ip


def is_public(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (after :func:`unwrap`)."""
    for candidate in {ip, unwrap(ip)}:
        if (
            not candidate.is_global
            or candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
            or (isinstance(candidate, ipaddress.IPv6Address) and candidate.is_site_local)
            or any(candidate in net for net in _EXTRA_BLOCKED if net.version == candidate.version)
        ):
            return False
    return True


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(values: Iterable[str], setting: str) -> list[Network]:
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                f'AUTOMATE["{setting}"] holds {value!r}, which is not a network such as '
                f'"10.0.0.0/8" or "fd00::/8": {exc}'
            ) from None
    return networks


def _in(ip: IPAddress, networks: Iterable[Network]) -> bool:
    return any(c.version == n.version and c in n for n in networks for c in {ip, unwrap(ip)})


def normalize_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def host_matches(host: str, patterns: Iterable[str]) -> bool:
    """``api.corp`` matches exactly; ``.corp`` or ``*.corp`` match the domain and below."""
    host = normalize_host(host)
    for pattern in patterns:
        pattern = normalize_host(pattern)
        if pattern.startswith("*."):
            pattern = pattern[1:]
        if pattern.startswith("."):
            if host == pattern[1:] or host.endswith(pattern):
                return True
        elif host == pattern:
            return True
    return False


#: The outbound purposes an allow-list can be opened for (``AUTOMATE["HTTP_ALLOW_FOR"]``).
#: ``http_request``: the workflow step of that name (URLs a workflow author, or a payload,
#: chose); ``connection``: connector actions; ``llm``: LLM providers; ``rag``: embedding
#: services and vector stores; ``mcp``: MCP servers; ``webhooks``: outgoing webhook
#: deliveries. A call made with no purpose (project code calling the client directly)
#: gets only the global ``HTTP_ALLOW_NETWORKS`` / ``HTTP_ALLOW_HOSTS``.
PURPOSES = ("http_request", "connection", "llm", "rag", "mcp", "webhooks")


def allowed_for(purpose: str | None) -> tuple[list[Network], list[str]]:
    """The non-public networks and host names ``purpose`` may reach.

    The global ``HTTP_ALLOW_NETWORKS`` / ``HTTP_ALLOW_HOSTS`` (kept for every purpose, as
    before) plus the purpose's own entry of ``HTTP_ALLOW_FOR``; opening a network for
    ``mcp`` there leaves it closed to ``http_request`` URLs.
    """
    networks = _networks(automate_settings.HTTP_ALLOW_NETWORKS, "HTTP_ALLOW_NETWORKS")
    hosts = list(automate_settings.HTTP_ALLOW_HOSTS)
    if purpose is not None:
        own = automate_settings.HTTP_ALLOW_FOR.get(purpose) or {}
        networks += _networks(own.get("networks", ()), f"HTTP_ALLOW_FOR.{purpose}.networks")
        hosts += list(own.get("hosts", ()))
    return networks, hosts


def check_address(ip: IPAddress, host: str, *, purpose: str | None = None) -> None:
    """Raise :class:`SSRFError` unless ``ip`` (reached as ``host``) may be contacted
    for ``purpose`` (see :data:`PURPOSES`)."""
    deny = _networks(automate_settings.HTTP_DENY_NETWORKS, "HTTP_DENY_NETWORKS")
    if _in(ip, METADATA_NETWORKS) or _in(ip, deny):
        raise SSRFError(f"{host} resolves to {ip}, a blocked address", reason="denied_address")
    if is_public(ip):
        return
    allow, hosts = allowed_for(purpose)
    if _in(ip, allow) or host_matches(host, hosts):
        return
    where = f'AUTOMATE["HTTP_ALLOW_FOR"]["{purpose}"] (for {purpose} only) or ' if purpose else ""
    raise SSRFError(
        f"{host} resolves to {ip}, which is not a public address; add it to {where}"
        'AUTOMATE["HTTP_ALLOW_NETWORKS"] or ["HTTP_ALLOW_HOSTS"] (every outbound path) if '
        "it is a trusted service",
        reason="private_address",
    )


def ip_literal(host: str) -> IPAddress | None:
    """Parse ``host`` as an IP address if it is one in canonical notation, else ``None``.

    Raises :class:`SSRFError` for IPv4 in the legacy notations that ``inet_aton`` accepts
    (``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``0``): resolvers disagree on
    them, and no legitimate service is addressed that way.
    """
    bare = host.strip("[]")
    if "%" in bare:
        raise SSRFError(f"IPv6 zone ids are not allowed in URLs: {host}", reason="ip_notation")
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        socket.inet_aton(bare)
    except (OSError, ValueError):
        return None
    raise SSRFError(
        f"{host!r} is an IPv4 address in a legacy notation; write it as a dotted quad",
        reason="ip_notation",
    )


def check_url(url: Any, *, purpose: str | None = None) -> None:
    """Checks that need no DNS: scheme, userinfo, port, deny-listed names, IP literals.

    ``url`` is an :class:`httpx.URL` (the parse that will actually be sent); ``purpose``
    chooses the allow-list an IP literal is checked against (see :data:`PURPOSES`).
    """
    scheme = url.scheme.lower()
    text = str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)
    if scheme not in ALLOWED_SCHEMES:
        raise SSRFError(
            f"scheme {scheme or '(none)'!r} is not allowed (only http and https)",
            reason="scheme",
            url=text,
        )
    if url.userinfo:
        raise SSRFError(
            "credentials in the URL (user:password@host) are not allowed; use credentials_ref",
            reason="userinfo",
            url=text,
        )
    host = url.host
    if not host:
        raise SSRFError("the URL has no host", reason="host", url=text)
    port = url.port or (443 if scheme == "https" else 80)
    ports = automate_settings.HTTP_ALLOWED_PORTS
    if ports != "*" and port not in ports:
        raise SSRFError(
            f'port {port} is not in AUTOMATE["HTTP_ALLOWED_PORTS"] ({ports})',
            reason="port",
            url=text,
        )
    name = normalize_host(host)
    if host_matches(name, METADATA_HOSTS) or host_matches(name, automate_settings.HTTP_DENY_HOSTS):
        raise SSRFError(f"host {name} is deny-listed", reason="denied_host", url=text)
    literal = ip_literal(name)
    if literal is not None:
        check_address(literal, name, purpose=purpose)


def resolve_checked(
    host: str,
    port: int,
    *,
    unresolvable: type[Exception] = httpcore.ConnectError,
    purpose: str | None = None,
) -> list[tuple[int, IPAddress]]:
    """Resolve ``host`` once and check every address; return ``(family, ip)`` pairs.

    A name that does not resolve to any IPv4 or IPv6 address raises ``unresolvable``: the
    connect error of the httpcore flavour that asked (httpcore, or httpcore2 for the MCP
    SDK), so its client reports it like any refused connection.
    """
    literal = ip_literal(host)
    if literal is not None:
        check_address(literal, host, purpose=purpose)
        family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        return [(family, literal)]
    if host_matches(host, METADATA_HOSTS) or host_matches(host, automate_settings.HTTP_DENY_HOSTS):
        raise SSRFError(f"host {normalize_host(host)} is deny-listed", reason="denied_host")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise unresolvable(f"cannot resolve {host}: {exc}") from exc
    checked: list[tuple[int, IPAddress]] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        check_address(ip, host, purpose=purpose)
        if (family, ip) not in checked:
            checked.append((family, ip))
    if not checked:
        raise unresolvable(f"{host} has no IPv4 or IPv6 address")
    return checked


_HTTPCORE_CONNECT_ERRORS: tuple[type[Exception], type[Exception]] = (
    httpcore.ConnectError,
    httpcore.ConnectTimeout,
)


class _Attempts:
    """The checked addresses to try in order, remembering why each one failed.

    One loop for the sync and the async backends: iterate, connect inside
    :meth:`failure` (a connect error moves on to the next address), and raise
    :meth:`last_error` when none answered.
    """

    def __init__(
        self, checked: list[tuple[int, IPAddress]], errors: tuple[type[Exception], ...]
    ) -> None:
        self._addresses = [str(ip) for _family, ip in checked]
        self._errors = errors
        self._error: Exception | None = None

    def __iter__(self) -> Iterator[str]:
        return iter(self._addresses)

    @contextmanager
    def failure(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            self._error = exc

    def last_error(self) -> Exception:
        assert self._error is not None, "resolve_checked returns at least one address"
        return self._error


class GuardedConnect:
    """The guarded part of a sync network backend, for httpcore and httpcore2 alike.

    A subclass names the library's connect errors (``connect_errors``: ConnectError, then
    ConnectTimeout), the :class:`~automate_core._deadline.DeadlineStream` of that library
    (``stream``) and sets ``self._inner`` to its ``SyncBackend``. :meth:`connect_tcp`
    resolves the host once, checks EVERY address with :func:`check_address`, connects to
    the first checked address that answers and clamps the stream to the call's deadline.
    """

    connect_errors: ClassVar[tuple[type[Exception], type[Exception]]]
    stream: ClassVar[type[DeadlineStream]]
    _inner: Any
    #: The allow-list this backend's connections are checked against (see PURPOSES).
    purpose: str | None = None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        checked = resolve_checked(
            host, port, unresolvable=self.connect_errors[0], purpose=self.purpose
        )
        attempts = _Attempts(checked, self.connect_errors)
        for ip in attempts:
            with attempts.failure():
                stream = self._inner.connect_tcp(
                    ip,
                    port,
                    remaining(timeout, self.connect_errors[1]),
                    local_address,
                    socket_options,
                )
                return self.stream(stream)
        raise attempts.last_error()

    def connect_unix_socket(self, path: str, timeout=None, socket_options=None):  # type: ignore[no-untyped-def]
        raise SSRFError("Unix sockets are not allowed", reason="scheme")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _DeadlineStream(DeadlineStream, httpcore.NetworkStream):
    expired = httpcore.ReadTimeout


class _AsyncDeadlineStream(AsyncDeadlineStream, httpcore.AsyncNetworkStream):
    expired = httpcore.ReadTimeout


class GuardedBackend(GuardedConnect, httpcore.NetworkBackend):
    """httpcore backend that resolves once, checks every address and connects to one of them.

    ``purpose`` chooses the allow-list (see :data:`PURPOSES`).
    """

    connect_errors = _HTTPCORE_CONNECT_ERRORS
    stream = _DeadlineStream

    def __init__(self, purpose: str | None = None) -> None:
        self._inner = httpcore.SyncBackend()
        self.purpose = purpose


class AsyncGuardedConnect:
    """The guarded part of an async network backend, for httpcore and httpcore2 alike.

    A subclass names the library's connect errors (``connect_errors``: ConnectError, then
    ConnectTimeout) and sets ``self._inner`` to that library's ``AnyIOBackend``. Then
    :meth:`connect_tcp` resolves the host once, checks EVERY address with
    :func:`check_address` and connects to the first checked address that answers, so the
    kernel's client (httpcore) and the MCP SDK's (httpcore2) keep one set of rules. A
    backend that names an :class:`~automate_core._deadline.AsyncDeadlineStream` as
    ``stream`` (the kernel's, the LLM SDKs') also clamps the stream to the call's deadline.
    """

    connect_errors: ClassVar[tuple[type[Exception], type[Exception]]]
    stream: ClassVar[type[AsyncDeadlineStream] | None] = None
    _inner: Any
    #: The allow-list this backend's connections are checked against (see PURPOSES).
    purpose: str | None = None

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> Any:
        import anyio.to_thread

        resolve = functools.partial(
            resolve_checked,
            host,
            port,
            unresolvable=self.connect_errors[0],
            purpose=self.purpose,
        )
        attempts = _Attempts(await anyio.to_thread.run_sync(resolve), self.connect_errors)
        for ip in attempts:
            with attempts.failure():
                stream = await self._inner.connect_tcp(
                    ip,
                    port,
                    remaining(timeout, self.connect_errors[1]),
                    local_address,
                    socket_options,
                )
                return stream if self.stream is None else self.stream(stream)
        raise attempts.last_error()

    async def connect_unix_socket(self, path: str, timeout=None, socket_options=None):  # type: ignore[no-untyped-def]
        raise SSRFError("Unix sockets are not allowed", reason="scheme")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class AsyncGuardedBackend(AsyncGuardedConnect, httpcore.AsyncNetworkBackend):
    """The async twin of :class:`GuardedBackend` (asyncio or trio through anyio)."""

    connect_errors = _HTTPCORE_CONNECT_ERRORS
    stream = _AsyncDeadlineStream

    def __init__(self, purpose: str | None = None) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.purpose = purpose

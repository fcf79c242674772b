"""Network guards for the kernel's tests: no packet may leave this machine.

* ``net_guard`` (autouse) wraps ``socket.socket.connect``/``connect_ex``: loopback goes
  through, anything else fails the test, unless the test calls ``net_guard.refuse_public()``,
  in which case the attempt is recorded and refused with ``ConnectionRefusedError`` (how
  a test asserts "the socket targeted exactly the checked IP" without sending a packet).
* ``fake_dns`` (autouse) replaces ``socket.getaddrinfo`` with a table: numeric hosts are
  parsed locally (``AI_NUMERICHOST``, never DNS), names must be in the table, and any
  other name raises ``socket.gaierror``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.core.helpers import LocalServer

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


class NetGuard:
    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []
        self.violations: list[Any] = []
        self.public_refused = False

    def refuse_public(self) -> None:
        self.public_refused = True

    @property
    def public_attempts(self) -> list[tuple[str, int]]:
        return [(h, p) for h, p in self.attempts if not ipaddress.ip_address(h).is_loopback]

    def check(self, address: Any) -> None:
        if not isinstance(address, tuple):  # AF_UNIX paths stay on this machine
            return
        ip = ipaddress.ip_address(str(address[0]).split("%", 1)[0])
        self.attempts.append((str(ip), int(address[1])))
        if ip.is_loopback:
            return
        if self.public_refused:
            raise ConnectionRefusedError(f"net guard: refused a connect to {address[0]}")
        self.violations.append(address)
        pytest.fail(f"a test tried to connect to {address!r}: only loopback is allowed")


class FakeDNS:
    def __init__(self) -> None:
        self.table: dict[str, list[list[str]]] = {}
        self.lookups: list[str] = []
        self.add("localhost", "127.0.0.1", "::1")

    def add(self, name: str, *addresses: str) -> None:
        """``name`` resolves to ``addresses`` (every time)."""
        self.table[name.lower()] = [list(addresses)]

    def sequence(self, name: str, *answers: list[str]) -> None:
        """Each lookup of ``name`` takes the next answer; the last one repeats."""
        self.table[name.lower()] = [list(a) for a in answers]

    def getaddrinfo(
        self, host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
    ) -> list[Any]:
        if isinstance(host, bytes):
            host = host.decode()
        try:
            return _real_getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass
        name = str(host).rstrip(".").lower()
        self.lookups.append(name)
        answers = self.table.get(name)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, f"fake resolver: {name!r} is not in the table")
        addresses = answers.pop(0) if len(answers) > 1 else answers[0]
        port_number = int(port or 0)
        result = []
        for address in addresses:
            ip = ipaddress.ip_address(address)
            if family not in (0, socket.AF_UNSPEC) and family != (
                socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            ):
                continue
            if ip.version == 6:
                result.append(
                    (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port_number, 0, 0))
                )
            else:
                result.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port_number)))
        return result


@pytest.fixture(autouse=True)
def net_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[NetGuard]:
    guard = NetGuard()

    def connect(sock: socket.socket, address: Any) -> None:
        guard.check(address)
        return _real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        guard.check(address)
        return _real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield guard
    assert not guard.violations, f"non-loopback connects: {guard.violations}"


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    dns = FakeDNS()
    monkeypatch.setattr(socket, "getaddrinfo", dns.getaddrinfo)
    return dns


@pytest.fixture
def server() -> Iterator[LocalServer]:
    """A real HTTP server on 127.0.0.1 (reach it inside ``with server.allowed():``)."""
    local = LocalServer().start()
    yield local
    local.stop()

"""The SSRF table: every form below must raise SSRFError, and no socket may reach it.

Forms that need no server are checked with the sync and the async client; the fake
resolver in conftest maps the names; the net guard fails the test on any non-loopback
connect, and each case also asserts that no connect was attempted at all.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from automate_core.http import ResponseTooLarge, SSRFError
from rag.security.ssrf_client import async_ssrf_safe_request, ssrf_safe_request
from tests.core.helpers import gzip_bomb, lying_length, redirect, send

NAMES = {
    "localhost.localdomain": ["127.0.0.1"],
    "instance-data": ["169.254.169.254"],
    "metadata.google.internal": ["169.254.169.254"],
    "metadata.azure.example": ["169.254.169.254"],
    "ecs-metadata.example": ["169.254.170.2"],
    "internal.example": ["10.1.2.3"],
    "corp.example": ["172.20.0.5"],
    "home.example": ["192.168.1.10"],
    "carrier.example": ["100.64.12.1"],
    "mixed.example": ["93.184.215.14", "10.0.0.7"],
    "mixed6.example": ["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::1"],
    "v6private.example": ["fd12:3456::1"],
    "v6mapped.example": ["::ffff:10.0.0.1"],
    "nat64.example": ["64:ff9b::a9fe:a9fe"],
    "sixtofour.example": ["2002:c0a8:0101::1"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "zero.example": ["0.0.0.0"],
    "multicast.example": ["239.255.255.250"],
}

URL_FORMS = [
    # loopback in every notation
    "http://127.0.0.1/",
    "http://127.0.0.2/",
    "https://127.0.0.1/",
    "http://2130706433/",
    "http://017700000001/",
    "http://0177.0.0.1/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://127.1/",
    "http://127.0.1/",
    "http://127.000.000.001/",
    "http://0/",
    "http://0.0.0.0/",
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://localhost/",
    "http://LOCALHOST./",
    "http://localhost.localdomain/",
    "http://127.0.0.1.nip.io/",
    "http://①②⑦.0.0.1/",
    # cloud metadata, by address and by name
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[fd00:ec2::254]/",
    "http://169.254.170.2/v2/credentials",
    "http://100.100.100.200/latest/meta-data/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://instance-data/latest/",
    "http://metadata.azure.example/metadata/instance",
    "http://ecs-metadata.example/",
    # private, shared, link-local, multicast, reserved
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.254/",
    "http://192.168.0.1/",
    "http://192.168.1.1:8080/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    "http://169.254.1.1/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://198.18.0.1/",
    "http://192.0.0.8/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[fc00::1]/",
    "http://[fec0::1]/",
    "http://[ff02::1]/",
    # names that resolve inside, including one bad address among good ones
    "http://internal.example/",
    "http://corp.example/",
    "http://home.example/",
    "http://carrier.example/",
    "http://mixed.example/",
    "http://mixed6.example/",
    "http://v6private.example/",
    "http://v6mapped.example/",
    "http://nat64.example/",
    "http://sixtofour.example/",
    "http://zero.example/",
    "http://multicast.example/",
    # schemes, userinfo, ports
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_stats",
    "gopher://example.com/",
    "ftp://example.com/pub/",
    "dict://127.0.0.1:11211/stat",
    "ldap://127.0.0.1/",
    "javascript:alert(1)",
    "http:///etc/passwd",
    "http://user:pass@example.com/",
    "http://example.com\\@127.0.0.1/",
    "http://127.0.0.1:22/",
    "http://example.com:6379/",
]


@pytest.fixture
def names(fake_dns):
    fake_dns.add("example.com", "93.184.215.14")
    for name, addresses in NAMES.items():
        fake_dns.add(name, *addresses)
    return fake_dns


def test_ssrf_table__has_at_least_60_forms():
    assert len(URL_FORMS) + len(REDIRECT_TARGETS) * 4 + len(BODY_CASES) >= 60
    assert len(set(URL_FORMS)) == len(URL_FORMS)


@pytest.mark.parametrize("url", URL_FORMS)
def test_ssrf_safe_request__blocks(url, names, net_guard):
    with pytest.raises(SSRFError) as info:
        ssrf_safe_request("GET", url, timeout=5)
    assert info.value.code == "permission_denied"
    assert info.value.retryable is False
    assert net_guard.attempts == []


@pytest.mark.parametrize("url", URL_FORMS)
def test_async_ssrf_safe_request__blocks(url, names, net_guard):
    with pytest.raises(SSRFError):
        asyncio.run(async_ssrf_safe_request("GET", url, timeout=5))
    assert net_guard.attempts == []


# -- Redirects to private targets, through a real server on 127.0.0.1 -----------------

REDIRECT_TARGETS = [
    "http://127.0.0.2:{port}/secret",
    "http://localhost:{port}/secret",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/",
    "http://[::1]:{port}/secret",
    "http://internal.example/",
    "gopher://127.0.0.1:{port}/_x",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("target", REDIRECT_TARGETS)
def test_ssrf_safe_request__blocks_redirect(status, target, server, names, net_guard):
    # The server itself is admitted by host name only, so the same address under another
    # name (localhost, [::1]) or any other internal address stays blocked.
    server.routes["/start"] = redirect(status, target.format(port=server.port))
    server.routes["/secret"] = lambda h: send(h, 200, b"internal data")
    only_by_name = server.allowed(HTTP_ALLOW_NETWORKS=[], HTTP_ALLOW_HOSTS=["127.0.0.1"])
    with only_by_name, pytest.raises(SSRFError):
        ssrf_safe_request("POST", server.url("/start"), json={"a": 1}, timeout=5)
    assert [r[1] for r in server.requests] == ["/start"]
    assert net_guard.public_attempts == []


def test_ssrf_safe_request__redirect_chain_is_checked_at_every_hop(server, names):
    server.routes["/a"] = redirect(302, "/b")
    server.routes["/b"] = redirect(302, server.url("/c"))
    server.routes["/c"] = redirect(307, "http://10.0.0.1/")
    with server.allowed(), pytest.raises(SSRFError):
        ssrf_safe_request("GET", server.url("/a"), timeout=5)
    assert [r[1] for r in server.requests] == ["/a", "/b", "/c"]


def test_async_ssrf_safe_request__blocks_redirect(server, names):
    server.routes["/start"] = redirect(302, "http://169.254.169.254/")
    with server.allowed(), pytest.raises(SSRFError):
        asyncio.run(async_ssrf_safe_request("GET", server.url("/start"), timeout=5))


# -- Bodies: a lying Content-Length, a gzip bomb ---------------------------------------

MIB = 1024 * 1024
BOMB = gzip_bomb(64 * MIB)

BODY_CASES = {
    "lying-content-length": lying_length(3 * MIB, claimed=100),
    "no-length-connection-close": lambda h: _close_delimited(h, 3 * MIB),
    "declared-too-large": lambda h: send(h, 200, b"x" * 10, {"Content-Length": str(4 * MIB)}),
    "gzip-bomb": lambda h: send(h, 200, BOMB, {"Content-Encoding": "gzip"}),
    "double-gzip-bomb": lambda h: send(
        h, 200, gzip_bomb_twice(), {"Content-Encoding": "gzip, gzip"}
    ),
}


def _close_delimited(handler, total):
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    try:
        for _ in range(total // 65536):
            handler.wfile.write(b"y" * 65536)
    except OSError:
        pass
    handler.close_connection = True


_TWICE: list[bytes] = []


def gzip_bomb_twice() -> bytes:
    if not _TWICE:
        import gzip

        _TWICE.append(gzip.compress(gzip_bomb(32 * MIB)))
    return _TWICE[0]


@pytest.mark.parametrize("case", sorted(BODY_CASES))
def test_ssrf_safe_request__caps_body(case, server):
    assert len(BOMB) < MIB  # the bomb itself is small: only decompression can catch it
    server.routes["/body"] = BODY_CASES[case]
    with server.allowed(), pytest.raises(ResponseTooLarge) as info:
        ssrf_safe_request("GET", server.url("/body"), max_size=MIB, timeout=10)
    assert isinstance(info.value, SSRFError)
    assert info.value.details["reason"] == "too_large"


@pytest.mark.parametrize("case", ["lying-content-length", "gzip-bomb"])
def test_async_ssrf_safe_request__caps_body(case, server):
    server.routes["/body"] = BODY_CASES[case]
    with server.allowed(), pytest.raises(ResponseTooLarge):
        asyncio.run(async_ssrf_safe_request("GET", server.url("/body"), max_size=MIB, timeout=10))


# -- DNS pinning: one lookup, connect to the checked address ---------------------------


def test_ssrf_safe_request__connects_to_the_checked_address(fake_dns, net_guard):
    fake_dns.add("api.example.com", "93.184.215.14")
    net_guard.refuse_public()
    with pytest.raises(httpx.ConnectError):
        ssrf_safe_request("GET", "https://api.example.com/data", timeout=5)
    assert net_guard.attempts == [("93.184.215.14", 443)]
    assert fake_dns.lookups == ["api.example.com"]


def test_ssrf_safe_request__rebinding_never_reaches_the_second_answer(fake_dns, net_guard):
    fake_dns.sequence("rebind.example", ["93.184.215.14"], ["127.0.0.1"])
    net_guard.refuse_public()
    with pytest.raises(httpx.ConnectError):
        ssrf_safe_request("GET", "http://rebind.example/", timeout=5)
    # One lookup for the request: the socket went to the address that was checked.
    assert fake_dns.lookups == ["rebind.example"]
    assert net_guard.attempts == [("93.184.215.14", 80)]
    # The next request sees the rebound (private) answer and is refused before any connect.
    with pytest.raises(SSRFError):
        ssrf_safe_request("GET", "http://rebind.example/", timeout=5)
    assert net_guard.attempts == [("93.184.215.14", 80)]


def test_async_ssrf_safe_request__connects_to_the_checked_address(fake_dns, net_guard):
    fake_dns.add("api.example.com", "2606:2800:21f:cb07:6820:80da:af6b:8b2c")
    net_guard.refuse_public()
    with pytest.raises(httpx.ConnectError):
        asyncio.run(async_ssrf_safe_request("GET", "http://api.example.com/", timeout=5))
    assert net_guard.attempts == [("2606:2800:21f:cb07:6820:80da:af6b:8b2c", 80)]
    assert fake_dns.lookups == ["api.example.com"]


def test_ssrf_safe_request__unknown_name_is_a_connect_error(fake_dns, net_guard):
    with pytest.raises(httpx.ConnectError, match="cannot resolve"):
        ssrf_safe_request("GET", "http://nowhere.invalid/", timeout=5)
    assert net_guard.attempts == []

"""automate_core.net: the guard's public home, and the one guarded connect that the kernel's
httpcore backend and any other httpcore flavour (the MCP SDK's httpcore2) share.

The fake resolver and the net guard of conftest keep every socket on this machine: a
public address is recorded and refused, never contacted.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from automate_core import http, net
from tests.core.helpers import LocalServer, send


def test_net__holds_the_same_objects_as_the_http_client():
    assert net.SSRFError is http.SSRFError
    assert net.ResponseTooLarge is http.ResponseTooLarge
    assert issubclass(net.ResponseTooLarge, net.SSRFError)


def _fetch(flavour: str, url: str) -> httpx.Response:
    if flavour == "sync":
        return http.ssrf_safe_request("GET", url, timeout=5)
    return asyncio.run(http.async_ssrf_safe_request("GET", url, timeout=5))


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_guarded_connect__an_address_that_refuses_passes_to_the_next_checked_one(
    flavour, server, fake_dns, net_guard
):
    server.routes["/"] = lambda h: send(h, 200, b"ok")
    fake_dns.add("twice.example", "93.184.215.14", "127.0.0.1")
    net_guard.refuse_public()
    with server.allowed():
        response = _fetch(flavour, server.url("/", host="twice.example"))
    assert (response.status_code, response.content) == (200, b"ok")
    assert net_guard.attempts == [("93.184.215.14", server.port), ("127.0.0.1", server.port)]
    assert fake_dns.lookups == ["twice.example"]


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_guarded_connect__when_every_address_refuses_the_last_error_is_raised(
    flavour, fake_dns, net_guard
):
    fake_dns.add("down.example", "93.184.215.14", "93.184.215.15")
    net_guard.refuse_public()
    with pytest.raises(httpx.ConnectError):
        _fetch(flavour, "http://down.example/")
    assert net_guard.attempts == [("93.184.215.14", 80), ("93.184.215.15", 80)]


# -- The same connect for httpcore2, built as docs/outbound-http.md shows ---------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "outbound-http.md"


@pytest.fixture
def httpcore2_backend() -> Any:
    pytest.importorskip(
        "httpcore2", reason="httpcore2 comes with the mcp extra (the MCP SDK's HTTP stack)"
    )
    blocks = re.findall(r"^```python\n(.*?)^```", DOCS.read_text(), re.S | re.M)
    (example,) = [block for block in blocks if "AsyncGuardedConnect" in block]
    namespace: dict[str, Any] = {}
    exec(example, namespace)
    return namespace["GuardedAsyncBackend"]()


async def _connect_and_close(backend: Any, host: str, port: int) -> None:
    stream = await backend.connect_tcp(host, port, timeout=5)
    await stream.aclose()


def test_async_guarded_connect__httpcore2_reaches_only_checked_addresses(
    httpcore2_backend, server: LocalServer, fake_dns, net_guard
):
    fake_dns.add("twice.example", "93.184.215.14", "127.0.0.1")
    net_guard.refuse_public()
    with server.allowed():
        asyncio.run(_connect_and_close(httpcore2_backend, "twice.example", server.port))
    assert net_guard.attempts == [("93.184.215.14", server.port), ("127.0.0.1", server.port)]


def test_async_guarded_connect__httpcore2_private_answer_refused_before_any_connect(
    httpcore2_backend, fake_dns, net_guard
):
    fake_dns.add("internal.example", "93.184.215.14", "10.1.2.3")
    with pytest.raises(net.SSRFError, match=r"10\.1\.2\.3"):
        asyncio.run(_connect_and_close(httpcore2_backend, "internal.example", 443))
    assert net_guard.attempts == []


def test_async_guarded_connect__httpcore2_unknown_name_is_its_own_connect_error(
    httpcore2_backend, fake_dns, net_guard
):
    import httpcore2

    # httpx2 maps only httpcore2's errors: httpcore's ConnectError would escape it unmapped.
    with pytest.raises(httpcore2.ConnectError, match=r"cannot resolve nowhere\.invalid"):
        asyncio.run(_connect_and_close(httpcore2_backend, "nowhere.invalid", 443))


def test_async_guarded_connect__httpcore2_unix_sockets_refused(httpcore2_backend):
    with pytest.raises(net.SSRFError, match="Unix sockets"):
        asyncio.run(httpcore2_backend.connect_unix_socket("/run/docker.sock"))

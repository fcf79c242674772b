"""The total deadline: one stream wrapper for the kernel's httpcore and the LLM SDKs' httpcore2.

Each stack's client maps only its own library's errors, so a passed deadline must raise
the timeout of the stack that asked (httpx2 would let httpcore's ReadTimeout escape
unmapped). The dripping-server tests (tests/core/test_http_client.py,
tests/security/test_outbound.py) show the deadline ending real calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from automate_core._deadline import DEADLINE, remaining
from tests.core.helpers import LocalServer, send

STACKS = ["httpcore", "httpcore2"]


def _stack(name: str) -> tuple[Any, Any, Any]:
    """The library, its sync and its async guarded backend."""
    if name == "httpcore":
        import httpcore

        from automate_core._netguard import AsyncGuardedBackend, GuardedBackend

        return httpcore, GuardedBackend(), AsyncGuardedBackend()
    httpcore2 = pytest.importorskip("httpcore2", reason="httpcore2 comes with the LLM SDKs")
    from automate_core.sdkclient import _AsyncGuardedBackend, _GuardedBackend

    return httpcore2, _GuardedBackend(None), _AsyncGuardedBackend(None)


@contextmanager
def _deadline_passed() -> Iterator[None]:
    token = DEADLINE.set(time.monotonic() - 1)
    try:
        yield
    finally:
        DEADLINE.reset(token)


REQUEST = b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"


def test_deadline__remaining_is_the_timeout_without_a_deadline_and_clamped_within_one():
    assert remaining(7.0, TimeoutError) == 7.0
    assert remaining(None, TimeoutError) is None
    token = DEADLINE.set(time.monotonic() + 3600)
    try:
        assert remaining(5.0, TimeoutError) == 5.0  # the shorter of the two wins
        clamped = remaining(None, TimeoutError)
        assert clamped is not None
        assert 0 < clamped <= 3600
    finally:
        DEADLINE.reset(token)


def test_deadline__remaining_raises_the_callers_error_once_passed():
    with _deadline_passed(), pytest.raises(TimeoutError, match="total deadline has passed"):
        remaining(5.0, TimeoutError)


@pytest.mark.parametrize("stack", STACKS)
def test_deadline__a_sync_read_past_the_deadline_raises_the_stacks_read_timeout(
    stack, server: LocalServer
):
    library, backend, _ = _stack(stack)
    server.routes["/"] = lambda h: send(h, 200, b"ok")
    with server.allowed():
        stream = backend.connect_tcp("127.0.0.1", server.port, timeout=5)
    try:
        stream.write(REQUEST, timeout=5)
        with _deadline_passed(), pytest.raises(library.ReadTimeout, match="total deadline"):
            stream.read(1024, timeout=5)
        # Outside the deadline the wrapper passes the read through to the socket.
        assert stream.read(1024, timeout=5).startswith(b"HTTP/1.1 200")
    finally:
        stream.close()


@pytest.mark.parametrize("stack", STACKS)
def test_deadline__an_async_read_past_the_deadline_raises_the_stacks_read_timeout(
    stack, server: LocalServer
):
    library, _, backend = _stack(stack)
    server.routes["/"] = lambda h: send(h, 200, b"ok")

    async def exchange() -> bytes:
        stream = await backend.connect_tcp("127.0.0.1", server.port, timeout=5)
        try:
            await stream.write(REQUEST, timeout=5)
            with _deadline_passed(), pytest.raises(library.ReadTimeout, match="total deadline"):
                await stream.read(1024, timeout=5)
            return bytes(await stream.read(1024, timeout=5))
        finally:
            await stream.aclose()

    with server.allowed():
        assert asyncio.run(exchange()).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_deadline__a_connect_past_the_deadline_raises_the_stacks_connect_timeout(
    stack, mode, server: LocalServer
):
    library, sync_backend, async_backend = _stack(stack)

    def connect() -> Any:
        if mode == "sync":
            return sync_backend.connect_tcp("127.0.0.1", server.port, timeout=5)
        return asyncio.run(async_backend.connect_tcp("127.0.0.1", server.port, timeout=5))

    with server.allowed(), _deadline_passed(), pytest.raises(library.ConnectTimeout):
        connect()

"""A call's total deadline, enforced on every socket read and write (package-private).

A per-read timeout cannot stop a server that drips its answer one byte at a time; a total
deadline can. The caller sets :data:`DEADLINE` (an absolute ``time.monotonic()``) for the
duration of a call, and the guarded network backends hand their connection pool streams
wrapped in :class:`DeadlineStream` / :class:`AsyncDeadlineStream`, which clamp every
timeout to the time left.

One wrapper serves both HTTP stacks: ``httpcore`` (the kernel's client,
:mod:`automate_core.http`) and ``httpcore2`` (the LLM SDKs' client,
:mod:`automate_core.sdkclient`). A stack's subclass mixes in its ``NetworkStream`` class
and names the timeout error its client understands as ``expired``::

    class _DeadlineStream(DeadlineStream, httpcore.NetworkStream):
        expired = httpcore.ReadTimeout
"""

from __future__ import annotations

import contextvars
import time
from typing import Any, ClassVar

#: Absolute deadline (``time.monotonic()``) of the current call; streams clamp timeouts to it.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "automate_http_deadline", default=None
)


def remaining(timeout: float | None, expired: type[Exception]) -> float | None:
    """``timeout`` clamped to the time left before :data:`DEADLINE` (``timeout`` if none is set).

    Raises ``expired`` once the deadline has passed.
    """
    at = DEADLINE.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("the call's total deadline has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream:
    """A sync network stream whose reads, writes and TLS handshake end by the deadline."""

    #: What a read or write raises once the deadline has passed (the stack's ReadTimeout).
    expired: ClassVar[type[Exception]]

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = self._inner.read(max_bytes, remaining(timeout, self.expired))
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, remaining(timeout, self.expired))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout=None):  # type: ignore[no-untyped-def]
        inner = self._inner.start_tls(
            ssl_context, server_hostname, remaining(timeout, self.expired)
        )
        return type(self)(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class AsyncDeadlineStream:
    """The async twin of :class:`DeadlineStream`."""

    expired: ClassVar[type[Exception]]

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data: bytes = await self._inner.read(max_bytes, remaining(timeout, self.expired))
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, remaining(timeout, self.expired))

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout=None):  # type: ignore[no-untyped-def]
        inner = await self._inner.start_tls(
            ssl_context, server_hostname, remaining(timeout, self.expired)
        )
        return type(self)(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

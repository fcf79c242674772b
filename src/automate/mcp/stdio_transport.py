"""The SDK's stdio transport, with our limits: a cap on each message and a kept stderr.

:func:`stdio_transport` wraps ``mcp.client.stdio.stdio_client``, which starts the program
in a new process group and, on exit, closes its stdin, then sends SIGTERM and SIGKILL to
the group (see :mod:`automate.mcp.stdio` for what the program is given); afterwards
whatever is left of the group gets SIGKILL, so no child of the program outlives a session.

The SDK reads stdout a line at a time with no size limit; the read stream handed to the
session here refuses every message larger than ``max_size`` bytes, so an oversized answer
fails the call like an oversized HTTP body does (``permission_denied``, ``too_large``).
The limit applies once a line is read: the time limits bound how much a program can
write before that.
The program's stderr goes to a temporary file, whose end is quoted (secrets redacted)
when the program fails to start or exits early.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import IO, Any, TextIO, cast

from automate.mcp.stdio import StdioCommand
from automate_core import redaction
from automate_core.net import ResponseTooLarge

#: How much of the end of a failed program's stderr an error message quotes.
STDERR_TAIL_CHARS = 1000


class CappedReadStream:
    """The session's read stream, refusing messages over ``max_size`` bytes of JSON."""

    def __init__(self, inner: Any, max_size: int, label: str) -> None:
        self._inner, self._max_size, self._label = inner, max_size, label

    def _checked(self, item: Any) -> Any:
        message = getattr(item, "message", None)
        if message is not None:
            size = len(message.model_dump_json(by_alias=True, exclude_unset=True).encode())
            if size > self._max_size:
                raise ResponseTooLarge(self._max_size, self._label)
        return item

    async def receive(self) -> Any:
        return self._checked(await self._inner.receive())

    def __aiter__(self) -> CappedReadStream:
        return self

    async def __anext__(self) -> Any:
        return self._checked(await self._inner.__anext__())

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> CappedReadStream:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    def __getattr__(self, name: str) -> Any:  # e.g. the SDK's optional ``last_context``
        return getattr(self._inner, name)


@asynccontextmanager
async def stdio_transport(
    command: StdioCommand, errlog: IO[bytes], *, max_size: int, label: str
) -> AsyncIterator[tuple[Any, Any]]:
    """Start ``command`` with the SDK and yield the capped streams; stop it on exit."""
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=command.program, args=list(command.argv[1:]), env=dict(command.env)
    )
    # The SDK types errlog as TextIO but only hands its file descriptor to the child.
    manager = stdio_client(params, errlog=cast(TextIO, errlog))
    pid: int | None = None
    try:
        async with manager as (read, write):
            pid = _child_pid(manager)
            yield CappedReadStream(read, max_size, label), write
    finally:
        if pid is not None:
            kill_process_group(pid)


def _child_pid(manager: Any) -> int | None:
    """The pid of the program the SDK started (read from its suspended generator: the
    SDK keeps the process to itself). None if a future SDK renames it; the SDK's own
    shutdown still stops the program then, and tests/mcp/test_stdio.py fails."""
    frame = getattr(getattr(manager, "gen", None), "ag_frame", None)
    process = frame.f_locals.get("process") if frame is not None else None
    pid = getattr(process, "pid", None)
    return pid if isinstance(pid, int) else None


def kill_process_group(pid: int) -> None:
    """SIGKILL what is left of the program's process group once the SDK has stopped it.

    The SDK signals the group only when the program outlives its grace period; a program
    that exits at once when its stdin closes would leave its own children running. The
    program leads its own group (the SDK starts it in a new session), and a group id is
    not reused while a member lives, so this reaches only what the program started.
    """
    if sys.platform == "win32":  # the SDK's Job Object already ends the whole tree
        return
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@contextmanager
def stderr_file() -> Iterator[IO[bytes]]:
    """A temporary file for the program's stderr, deleted afterwards."""
    with tempfile.TemporaryFile(prefix="automate-mcp-stderr-") as handle:
        yield handle


def stderr_tail(handle: IO[bytes], limit: int = STDERR_TAIL_CHARS) -> str:
    """The end of what the program wrote to stderr, secrets redacted ("" when nothing)."""
    try:
        size = os.fstat(handle.fileno()).st_size
        data = os.pread(handle.fileno(), limit * 4, max(0, size - limit * 4))
    except OSError:
        return ""
    # Redact before cutting, so a secret is never half-kept at the cut.
    return redaction.redact(data.decode("utf-8", "replace")).strip()[-limit:]

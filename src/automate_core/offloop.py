"""Synchronous work that a thread running an event loop may not do itself.

Django refuses database reads in a thread that runs an event loop
(``SynchronousOnlyOperation``), and ``asyncio.run`` refuses to nest. Code that may be
called from an async view, an async client's hook or a Jupyter cell hands such work to a
:class:`HelperThread` and waits for it: one thread per helper and per process, started
for the first call and kept, rather than a pool started and joined per call. A helper of
several threads does the same for work that runs in parallel (rag's embedding batches).

A forked child does not inherit the parent's thread, but would inherit its idle-looking
pool, which would take work and never do it: each helper starts over in the child.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["HelperThread", "in_event_loop"]

T = TypeVar("T")


def in_event_loop() -> bool:
    """Whether this thread runs an event loop (so it may not block on sync I/O itself)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class HelperThread:
    """One thread that runs the calls handed to it, one at a time, in order; or, with
    ``threads``, that many threads taking the calls in the order given (for work that
    runs in parallel, such as embedding batches).

    Each user keeps its own helper (a module-level instance): work of one kind never waits
    behind another's, such as a connection lookup behind a long MCP call.
    """

    def __init__(self, name: str, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"{name}: a helper needs at least one thread, not {threads}")
        self.name = name
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._idents: set[int] = set()
        os.register_at_fork(after_in_child=self._forget)

    def call(self, work: Callable[[], T]) -> T:
        """``work()``, in the helper thread; waits for it and returns or raises its result.

        From a helper thread itself (work that hands work to its own helper) it raises
        ``RuntimeError``: the thread would wait for itself forever."""
        if threading.get_ident() in self._idents:
            raise RuntimeError(f"{self.name}: a call from the helper thread would wait for itself")
        return self.executor().submit(work).result()

    def executor(self) -> ThreadPoolExecutor:
        """The helper's executor (of ``threads`` threads), for a caller that pipelines its
        work (submits and collects futures itself) rather than waiting for each call."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.threads, thread_name_prefix=self.name, initializer=self._started
                )
            return self._pool

    def _started(self) -> None:
        self._idents.add(threading.get_ident())

    def _forget(self) -> None:
        # The parent's lock may have been held by another thread at the fork.
        self._pool, self._lock, self._idents = None, threading.Lock(), set()

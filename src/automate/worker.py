"""The embedded worker: claims and executes in one process, with threads.

It is what ``manage.py automate_worker`` runs when no broker is configured (``make demo``)
and it calls exactly what the Celery tasks call (:func:`automate.dispatch.process_batch`).
:meth:`EmbeddedWorker.stop` (SIGTERM) lets every thread finish the step it is in, then
releases its items so another worker resumes them from the next step.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from django.db import DatabaseError, close_old_connections, connections

from automate import dispatch
from automate.conf import settings as app_settings

logger = logging.getLogger("automate.worker")

_running: list[EmbeddedWorker] = []
_running_lock = threading.Lock()


def wake() -> None:
    """Tell the embedded workers of this process that an event arrived."""
    with _running_lock:
        for worker in _running:
            worker.wake_event.set()


@dataclass
class EmbeddedWorker:
    threads: int = 1
    batch: int | None = None
    poll_seconds: float | None = None
    name: str = "embedded"
    stop_event: threading.Event = field(default_factory=threading.Event)
    wake_event: threading.Event = field(default_factory=threading.Event)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def stop(self) -> None:
        """Finish the current step in every thread, release the rest, then return."""
        self.stop_event.set()
        self.wake_event.set()

    def run(self, *, once: bool = False) -> dict[str, int]:
        """Work until :meth:`stop`; with ``once``, until no item is due. Returns counts."""
        with _running_lock:
            _running.append(self)
        try:
            if self.threads <= 1:
                # In the calling thread; the main thread's connection stays open for its
                # owner, a thread of ours closes its own.
                self._loop(
                    once, 0, own_thread=threading.current_thread() is not threading.main_thread()
                )
                return dict(self.counts)
            workers = [
                threading.Thread(target=self._loop, args=(once, i), name=f"{self.name}-{i}")
                for i in range(self.threads)
            ]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
        finally:
            with _running_lock:
                _running.remove(self)
        return dict(self.counts)

    def _pass(self, once: bool, own_thread: bool, poll: float, *, reclaim: bool = True) -> bool:
        """Claim and process one batch; False when ``once`` and nothing is due.
        ``reclaim``: return expired leases to the queue first (see :meth:`_loop`)."""
        if own_thread:
            close_old_connections()
        items = dispatch.claim(self.batch, worker=dispatch.worker_name(self.name), reclaim=reclaim)
        if not items:
            if once:
                return False
            self.wake_event.wait(poll)
            self.wake_event.clear()
            return True
        counts = dispatch.process_batch(items, should_stop=self.stop_event.is_set, checked=True)
        with self._lock:
            for key, value in counts.items():
                self.counts[key] = self.counts.get(key, 0) + value
        return True

    def _loop(self, once: bool, index: int, *, own_thread: bool = True) -> None:
        poll = self.poll_seconds
        if poll is None:
            poll = app_settings.WORKER_POLL_SECONDS
        # Each thread returns expired leases on its first pass, then at most once per
        # RECLAIM_SECONDS, as the dispatcher does: not before every batch and every poll.
        reclaims = dispatch.ReclaimSchedule()
        try:
            while not self.stop_event.is_set():
                try:
                    if not self._pass(once, own_thread, poll, reclaim=reclaims.due()):
                        return
                except DatabaseError:
                    # The database went away: the items keep their leases and come back;
                    # this thread waits and tries again rather than dying.
                    logger.exception("embedded worker thread %s: database error", index)
                    if once:
                        raise
                    connections.close_all()
                    self.stop_event.wait(max(poll, 1.0))
        finally:
            if own_thread:
                connections.close_all()

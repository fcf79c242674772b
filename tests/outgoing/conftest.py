"""Outgoing webhooks: a loopback receiver, settings that admit it, a worker pass.

The kernel's network guards apply here too (imported from tests/core): a connect to
anything but loopback fails the test, and names resolve from a table (``fake_dns``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from automate import dispatch
from tests.core.conftest import fake_dns, net_guard  # noqa: F401  (autouse guards)
from tests.core.helpers import LocalServer, automate_settings, redirect, send


class Receiver(LocalServer):
    """A loopback server with the answers a customer's endpoint may give."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()  # what /hang waits for (set at teardown)
        self.routes.update(
            {
                "/ok": lambda h: send(h, 200, b'{"received": true}'),
                "/accepted": lambda h: send(h, 204),
                "/fail": lambda h: send(h, 500, b"Internal Server Error"),
                "/gone": lambda h: send(h, 410, b"gone"),
                "/redirect": redirect(302, "/ok"),
                "/huge": lambda h: send(h, 200, b"x" * (256 * 1024)),
                "/hang": self._hang,
            }
        )

    def _hang(self, handler: Any) -> None:
        self.release.wait(10)
        send(handler, 200, b"too late")

    def hits(self, path: str) -> list[tuple[str, str, dict[str, str], bytes]]:
        return [r for r in self.requests if r[1] == path]

    def stop(self) -> None:
        self.release.set()
        super().stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A started :class:`Receiver`, admitted by the settings for the whole test."""
    local = Receiver().start()
    try:
        with outgoing_settings(local):
            yield local
    finally:
        local.stop()


def outgoing_settings(receiver: Receiver, **overrides: Any):
    """Admit the receiver (127.0.0.1, its port), retry at once, no jitter, one thread."""
    values: dict[str, Any] = {
        "HTTP_ALLOW_NETWORKS": ["127.0.0.1/32"],
        "HTTP_ALLOWED_PORTS": [80, 443, receiver.port],
        "OUTGOING_WEBHOOK_RETRY_SCHEDULE": [0, 0, 0],
        "OUTGOING_WEBHOOK_RETRY_JITTER": 0,
        "OUTGOING_WEBHOOK_THREADS": 1,
        "OUTGOING_WEBHOOK_TIMEOUT_SECONDS": 5.0,
    }
    values.update(overrides)
    return automate_settings(**values)


def work() -> dict[str, int]:
    """Claim and process due items until none is due, as a worker does; total counts."""
    counts: dict[str, int] = {}
    while items := dispatch.claim(20):
        for status, n in dispatch.process_batch(items).items():
            counts[status] = counts.get(status, 0) + n
    return counts

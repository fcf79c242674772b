"""Shared fixtures: service availability, signing helpers, a CSRF-enforcing client, and
Celery mode in the test process (``celery_broker``, ``celery_queue``)."""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest
from django.db import connection
from django.test import Client

if TYPE_CHECKING:
    from tests.celery_support import OwnPoolsCelery

REQUIRE_SERVICES = os.environ.get("AUTOMATE_REQUIRE_SERVICES") == "1"
REDIS_URL = os.environ.get("AUTOMATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def service_missing(reason: str) -> None:
    """Skip with ``reason``, or fail when CI requires every service."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing (AUTOMATE_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 1):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _forget_redacted_values() -> Iterator[None]:
    """Each test starts with an empty redaction memory and leaves it empty.

    The memory is process-wide: every secret value a test resolves is masked from then
    on, so an earlier test's value (the MCP spec snippets' api_key "secret") would mask
    that word in a later test's messages ("signing secret").
    """
    from automate_core import redaction

    redaction.forget_all()
    yield
    redaction.forget_all()


@pytest.fixture
def settled_once_per_batch(monkeypatch) -> None:
    """A batch settles its items once, at its end, however long it takes.

    For tests that count a batch's statements: a batch also settles whenever
    ``FLUSH_SECONDS`` pass, and on a loaded machine a batch of 20 can take that long, which
    adds statements without changing the outcome.
    """
    from automate import batch  # the app: imported once Django is set up

    monkeypatch.setattr(batch, "FLUSH_SECONDS", 10.0**9)


@pytest.fixture
def redis_url() -> str:
    if not _reachable(REDIS_URL):
        service_missing(f"no Redis server at {REDIS_URL} (set AUTOMATE_TEST_REDIS_URL)")
    return REDIS_URL


@pytest.fixture
def postgres(db) -> None:
    """Use in tests that need PostgreSQL behaviour (row locks, SKIP LOCKED)."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL; `make test` runs this suite again with AUTOMATE_TEST_DB=postgres"
        )


@pytest.fixture
def in_forked_child() -> Callable[[Callable[[], bool], str], None]:
    """``in_forked_child(check, what)`` runs ``check`` in a child forked from this process
    and fails the test unless it returns true there; ``what`` names it when the child hangs
    (killed after 60 s, so a deadlock in the child fails the test instead of hanging it)."""

    def child(check: Callable[[], bool]) -> None:
        # os._exit: the child must not run the parent's atexit hooks nor pytest's teardown.
        os._exit(0 if check() else 1)

    def run(check: Callable[[], bool], what: str) -> None:
        forked = multiprocessing.get_context("fork").Process(target=child, args=(check,))
        forked.start()
        forked.join(60)
        if forked.is_alive():
            forked.kill()
            forked.join()
            pytest.fail(f"the forked child's {what} never returned")
        assert forked.exitcode == 0

    return run


@pytest.fixture
def csrf_client() -> Client:
    """A test client that enforces CSRF checks, as a real sender's request would meet."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def celery_broker(settings) -> Iterator[Callable[..., OwnPoolsCelery]]:
    """Celery mode in this process: ``celery_broker(url, **conf)`` returns the Celery app
    that this test's sends go through (the current app until the test ends), pointed at
    ``url`` with ``conf`` on a queue of its own (``app.conf.task_default_queue``).

    The app owns its broker pools (tests/celery_support.py): the teardown closes them and
    restores the previous current app, and leaves every other test's connections alone.
    """
    from celery import current_app

    from tests.celery_support import OwnPoolsCelery

    previous = current_app._get_current_object()
    apps: list[OwnPoolsCelery] = []

    def connect(broker_url: str, **conf: Any) -> OwnPoolsCelery:
        app = OwnPoolsCelery(broker_url, **conf)
        app.set_current()
        apps.append(app)
        return app

    settings.AUTOMATE = {**settings.AUTOMATE, "EXECUTION": "celery"}
    yield connect
    for app in apps:
        app.close_pools()
    previous.set_current()


@pytest.fixture
def celery_queue(redis_url, celery_broker) -> Iterator[str]:
    """This process sends its tasks through Redis to a queue of its own, whose name a
    ``celery worker`` started by the test consumes; the queue is deleted afterwards."""
    app = celery_broker(redis_url)
    queue = app.conf.task_default_queue
    yield queue
    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)

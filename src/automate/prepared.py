"""Hot statements, prepared on the PostgreSQL server once per connection.

Django's psycopg 3 backend binds parameters on the client: every execution sends the
statement's text with its values inlined, and the server parses, analyses and plans it
again. For the webhook view's INSERT of an event and its receipt (a ``WITH`` of two
INSERTs, about twenty values) that is half of the server's work per request, and for a
non-idempotent step's start (:mod:`automate.commits`: a ``WITH`` renewing the lease and
writing records) about as much. Prepared once, later executions only bind the values and
run the cached generic plan.

Only :func:`fetchone` uses it, and only where it is safe:

* PostgreSQL through psycopg 3 (psycopg2 and other databases run the statement as usual);
* ``AUTOMATE["DATABASE_PREPARED_STATEMENTS"]`` (on by default). Turn it off behind a
  connection pooler in transaction mode that does not track protocol-level prepared
  statements: PgBouncer before 1.21, or 1.21+ with ``max_prepared_statements = 0``;
* outside a transaction (autocommit): a named statement created there is not undone by
  a later ROLLBACK.

A schema change needs nothing: PostgreSQL re-plans a prepared statement when a table it
reads changes. If the server has lost the statement or refuses it (a pooler handing the
session to another server connection, a ``DISCARD ALL``, a result type changed under
it), the statement is sent again the ordinary way and this connection stops preparing;
those errors are raised before anything runs, so nothing is written twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from django.db import DatabaseError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from automate.conf import settings as app_settings

__all__ = ["fetchone"]

#: SQLSTATEs of a prepared statement the server no longer has or will not run as prepared:
#: invalid_sql_statement_name, duplicate_prepared_statement, feature_not_supported
#: ("cached plan must not change result type").
_STALE = frozenset({"26000", "42P05", "0A000"})

#: psycopg connections on which preparing failed once: they execute as usual from then on.
_refused: weakref.WeakSet[Any] = weakref.WeakSet()

#: psycopg refuses ``prepare=True`` while a connection's threshold is None (Django's
#: default); so large a threshold prepares nothing else: only the statements asked for.
_ONLY_WHEN_ASKED = 2**31


def fetchone(db: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> Any:
    """Execute ``sql`` with ``params`` on ``db`` and return its first row (None if none),
    prepared on the server where that is possible (see the module's docstring).

    Errors are Django's (``IntegrityError``...), and the execution goes through Django's
    cursor wrapper: execute wrappers and ``connection.queries`` see it as any other.
    """
    cursor = _prepared_cursor(db)
    if cursor is None:
        with db.cursor() as plain:
            plain.execute(sql, params)
            return plain.fetchone()
    raw = db.connection
    threshold = raw.prepare_threshold
    if threshold is None:
        raw.prepare_threshold = _ONLY_WHEN_ASKED
    try:
        with cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    except DatabaseError as exc:
        state = getattr(exc.__cause__, "sqlstate", None)
        if state not in _STALE:
            raise
        _refused.add(raw)
    finally:
        raw.prepare_threshold = threshold
    with db.cursor() as plain:
        plain.execute(sql, params)
        return plain.fetchone()


def _prepared_cursor(db: BaseDatabaseWrapper) -> Any | None:
    """A Django cursor wrapper over a psycopg cursor that prepares what it executes, or
    None when this connection must not prepare."""
    if db.vendor != "postgresql" or not app_settings.DATABASE_PREPARED_STATEMENTS:
        return None
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    if not is_psycopg3 or db.in_atomic_block or not db.get_autocommit():
        return None
    db.ensure_connection()
    raw = db.connection
    if raw in _refused:
        return None
    # The psycopg cursor is built here, not with db.cursor(): Django's is a client-side
    # binding cursor, which never prepares.
    db.validate_thread_sharing()
    raw_cursor = _cursor_class()(raw)
    return _DebugWrapper(raw_cursor, db) if db.queries_logged else db.make_cursor(raw_cursor)


class _DebugWrapper(CursorDebugWrapper):
    """Logs the statement with its values, as Django's own cursor would: Django reads the
    text back from psycopg, which keeps none for a prepared execution."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(self.db.ops.compose_sql(sql, params), params):
            return CursorWrapper.execute(self, sql, params)


_PreparingCursor: type | None = None


def _cursor_class() -> type:
    global _PreparingCursor
    if _PreparingCursor is None:
        import psycopg

        class PreparingCursor(psycopg.Cursor):  # type: ignore[type-arg]
            """Prepares every statement it executes (Django's wrapper cannot ask)."""

            def execute(self, query, params=None, *, prepare=None, binary=None):  # type: ignore[no-untyped-def]
                return super().execute(query, params, prepare=True, binary=binary)

        _PreparingCursor = PreparingCursor
    return _PreparingCursor

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
it, another client's statement under that name that takes another number of parameters),
the statement is sent again the ordinary way and this connection stops preparing; those
errors are raised before anything runs, so nothing is written twice.

A statement is named after its text and parameter types (``automate_`` and a hash of
them), not with psycopg's per-connection counter (``_pg3_0``, ``_pg3_1``...): behind a
pooler that does not track prepared statements, a server session may hold another
client's statements, and under the counter's names those are different statements (the
webhook INSERT one process prepared first is ``_pg3_0``, so is the step start another
did), which a bind with the same number of parameters would run with our values. Under
a name derived from the text, a statement found on the server is the same statement.

With ``CONN_HEALTH_CHECKS``, a statement the caller marks repeatable (the webhook's)
is the connection's health check: it runs without Django's ``SELECT 1`` before it, and
runs once more on a new connection if it finds the old one dead (:func:`_checks_itself`).

Per call, the connection's one preparing cursor is reused (building a psycopg cursor
costs more than the rest of the call on the client), and psycopg's prepare threshold is
raised only for the call: left raised, psycopg would count every other statement the
connection runs in its cache of candidates.
"""

from __future__ import annotations

import hashlib
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
#: ("cached plan must not change result type"), protocol_violation ("bind message supplies
#: 1 parameters, but prepared statement ... requires 2": another statement under the name).
_STALE = frozenset({"26000", "42P05", "0A000", "08P01"})

#: psycopg connections on which preparing failed once: they execute as usual from then on.
_refused: weakref.WeakSet[Any] = weakref.WeakSet()

#: psycopg refuses ``prepare=True`` while a connection's threshold is None (Django's
#: default); so large a threshold prepares nothing else: only the statements asked for.
_ONLY_WHEN_ASKED = 2**31


def fetchone(
    db: BaseDatabaseWrapper, sql: str, params: Sequence[Any], *, repeatable: bool = False
) -> Any:
    """Execute ``sql`` with ``params`` on ``db`` and return its first row (None if none),
    prepared on the server where that is possible (see the module's docstring).

    Errors are Django's (``IntegrityError``...), and the execution goes through Django's
    cursor wrapper: execute wrappers and ``connection.queries`` see it as any other.

    ``repeatable``: running ``sql`` a second time is harmless (a repeat of a statement
    that took effect conflicts with what it wrote). Such a statement is its own health
    check (see :func:`_checks_itself`).
    """
    if repeatable and _checks_itself(db):
        db.health_check_done = True  # type: ignore[attr-defined]  # Django's; not in the stubs
        try:
            return _fetchone(db, sql, params)
        except DatabaseError:
            raw = db.connection
            if raw is not None and not raw.closed:
                raise  # the server answered: not a dead connection
        db.close()  # what a failed health check does; the next execution connects anew
    return _fetchone(db, sql, params)


def _checks_itself(db: BaseDatabaseWrapper) -> bool:
    """Whether a repeatable statement stands in for ``CONN_HEALTH_CHECKS``'s check.

    Django checks a kept connection before a request's first statement with a ``SELECT 1``
    of its own: a round trip that costs the server more than half what storing a webhook's
    event does (``benchmarks.callgrind_ingest``: its CPU per webhook fell from 422 to 264
    µs without it). Instead, where that check is due (enabled, not done this request,
    outside a transaction), the statement runs at once; if it finds the connection dead
    (the server restarted, the backend was terminated, a pooler closed it), it runs once
    more on a new connection, which is where the check would have run it. It may have
    taken effect before the connection died: its repeat then conflicts, and the caller
    answers as for any repeat.
    """
    return (
        db.connection is not None
        and db.health_check_enabled  # type: ignore[attr-defined]
        and not db.health_check_done  # type: ignore[attr-defined]
        and not db.in_atomic_block
    )


def _fetchone(db: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> Any:
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


def autocommit(db: BaseDatabaseWrapper) -> bool:
    """``db.get_autocommit()``, without its ``ensure_connection()`` once connected: that
    call checks for a running event loop (async-unsafe), which costs more than the rest,
    and a webhook asks several times; the statement's own execution checks it anyway."""
    return db.autocommit if db.connection is not None else db.get_autocommit()


def _prepared_cursor(db: BaseDatabaseWrapper) -> Any | None:
    """A Django cursor wrapper over a psycopg cursor that prepares what it executes, or
    None when this connection must not prepare."""
    if db.vendor != "postgresql" or not app_settings.DATABASE_PREPARED_STATEMENTS:
        return None
    if not _is_psycopg3() or db.in_atomic_block:
        return None
    # As Django's own cursor() does: with CONN_HEALTH_CHECKS a connection the server
    # dropped since the last request is replaced, not used to answer 500.
    db.close_if_health_check_failed()
    db.ensure_connection()
    if not autocommit(db):
        return None
    raw = db.connection
    if raw in _refused:
        return None
    # The psycopg cursor is built here, not with db.cursor(): Django's is a client-side
    # binding cursor, which never prepares. One per connection, kept open on the wrapper
    # (per thread, as the wrapper is) until the wrapper connects again.
    db.validate_thread_sharing()
    raw_cursor = getattr(db, "_automate_preparing", None)
    if raw_cursor is None or raw_cursor.connection is not raw:
        raw_cursor = _cursor_class()(raw)
        db._automate_preparing = raw_cursor  # type: ignore[attr-defined]
    return _DebugWrapper(raw_cursor, db) if db.queries_logged else db.make_cursor(raw_cursor)


_psycopg3: bool | None = None


def _is_psycopg3() -> bool:
    # Imported on first use (the PostgreSQL backend may not be installed), then kept: an
    # import statement per webhook costs more than the check.
    global _psycopg3
    if _psycopg3 is None:
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        _psycopg3 = bool(is_psycopg3)
    return _psycopg3


class _DebugWrapper(CursorDebugWrapper):
    """Logs the statement with its values, as Django's own cursor would: Django reads the
    text back from psycopg, which keeps none for a prepared execution."""

    def execute(self, sql: Any, params: Any = None) -> Any:
        with self.debug_sql(self.db.ops.compose_sql(sql, params), params):
            return CursorWrapper.execute(self, sql, params)


def statement_name(query: bytes, types: Sequence[int]) -> bytes:
    """The server-side name of a prepared statement: the same for the same text and
    parameter types in every process, and well under PostgreSQL's 63 bytes."""
    digest = hashlib.sha256(query + repr(tuple(types)).encode()).hexdigest()
    return b"automate_" + digest[:32].encode()


_PreparingCursor: type | None = None


def _cursor_class() -> type:
    global _PreparingCursor
    if _PreparingCursor is None:
        import psycopg
        from psycopg._preparing import Prepare

        class PreparingCursor(psycopg.Cursor):  # type: ignore[type-arg]
            """Prepares every statement it executes (Django's wrapper cannot ask), under a
            name derived from the statement (see the module's docstring)."""

            def execute(self, query, params=None, *, prepare=None, binary=None):  # type: ignore[no-untyped-def]
                return super().execute(query, params, prepare=True, binary=binary)

            # psycopg's hook (ClientCursor's says "never prepare"): the name it returns
            # for a statement to prepare is the one psycopg keeps and executes after.
            def _get_prepared(self, pgq, prepare=None):  # type: ignore[no-untyped-def]
                prep, name = super()._get_prepared(pgq, prepare)
                if prep is Prepare.SHOULD:
                    name = statement_name(pgq.query, pgq.types)
                return prep, name

        _PreparingCursor = PreparingCursor
    return _PreparingCursor

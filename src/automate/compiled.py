"""Hot ORM reads compiled to SQL once per database connection, then run with new values.

A worker's batch sends a handful of reads whose shape never changes (the claimed items,
the matching workflows, the ``wait_for_event`` path sets...), and building each QuerySet
and compiling it (``filter()``'s lookups, ``SQLCompiler.as_sql``) cost more of the
worker's CPU than anything else it does per batch: most of a one-event batch's. The text
depends on the model and the database, never on the values, so :func:`fetch` compiles a
read once per connection (``DatabaseWrapper``: one per alias and thread, so per vendor
too) and caller's key, then executes that text with the caller's parameters through
Django's cursor (execute wrappers and ``connection.queries`` see it as any other). The
rows are made into what the QuerySet itself would give: converters applied, model
instances made by ``from_db`` with annotations and ``select_related`` objects, or the
single values of ``values_list(flat=True)``.

A cached text cannot go stale: models, their tables (``db_table``, a schema in it, the
quoting) and the database routers do not change while a process runs, and the router is
asked on every call (the text is kept per connection it names).

Where each value goes is found, not assumed: the first time, ``build`` makes the QuerySet
from markers (an int or a str unlike any id or constant), and each marker must come out
of the compiler exactly once, unchanged, among the compiled parameters; its position is
then its value's, and the other parameters (constants the query itself holds, such as
``Exists``'s ``SELECT 1``) are kept as compiled. A marker missing or repeated (a lookup
that prepares its value, a backend that writes it into the text) marks the key as not
cached on that connection: every later call builds and runs the QuerySet as usual. So
does a call whose values are not of the types compiled (None included, which the ORM
compiles as ``IS NULL``).

The key, with the number of values, must stand for everything that shapes the text
besides the values themselves (``pk__in`` of n ids is kept per n).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model, QuerySet
from django.db.models.query import FlatValuesListIterable, ModelIterable, get_related_populators
from django.db.models.sql.compiler import SQLCompiler

__all__ = ["fetch"]

#: Texts kept per connection, at most; past it the connection starts over (keys are a
#: handful per statement: one per batch size for ``IN`` lists).
MAX_STATEMENTS = 256


class _Statement:
    """One compiled read: its text, its parameters' types, and how rows become results."""

    __slots__ = (
        "annotations",
        "col_count",
        "compiler",
        "constants",
        "converters",
        "end",
        "flat",
        "init_list",
        "locks",
        "model",
        "populators",
        "slots",
        "sql",
        "start",
        "trim",
        "types",
    )

    def __init__(
        self,
        compiler: SQLCompiler,
        sql: str,
        constants: list[Any],
        slots: list[int],
        types: list[type],
        flat: bool,
    ) -> None:
        self.sql, self.constants, self.slots, self.types = sql, constants, slots, types
        # As the compiler refuses it: a lock outside a transaction (SQLite drops the lock).
        features = compiler.connection.features
        self.locks = bool(compiler.query.select_for_update) and bool(
            features.has_select_for_update and features.supports_transactions
        )
        self.compiler, self.flat = compiler, flat
        self.col_count = compiler.col_count
        self.trim = compiler.has_extra_select  # columns added for ORDER BY only
        fields = [s[0] for s in compiler.select[0 : compiler.col_count]]
        self.converters = compiler.get_converters(fields)
        if flat:
            return
        info = compiler.klass_info
        select = compiler.select
        self.model = info["model"]
        fields_at = info["select_fields"]
        self.start, self.end = fields_at[0], fields_at[-1] + 1
        self.init_list = [f[0].target.attname for f in select[self.start : self.end]]
        # Related objects are read from the alias, as the QuerySet's (Django's signature
        # before 6.0, which the stubs follow).
        alias = compiler.connection.alias
        self.populators = get_related_populators(info, select, alias)  # type: ignore[call-arg]
        self.annotations = list((compiler.annotation_col_map or {}).items())

    def params(self, values: Sequence[Any]) -> list[Any]:
        """The compiled parameters, each value in its marker's place."""
        params = list(self.constants)
        for slot, value in zip(self.slots, values, strict=True):
            params[slot] = value
        return params

    def run(self, db: BaseDatabaseWrapper, params: Sequence[Any]) -> list[Any]:
        with db.cursor() as cursor:
            cursor.execute(self.sql, params)
            rows: Any = cursor.fetchall()
        if self.trim:
            rows = [row[: self.col_count] for row in rows]
        if self.converters:
            rows = self.compiler.apply_converters(rows, self.converters)
        if self.flat:
            return [row[0] for row in rows]
        return self._objects(rows, db.alias)

    def _objects(self, rows: Any, alias: str) -> list[Model]:
        # As ModelIterable makes them (no known related objects: a manager's QuerySet).
        start, end, init_list, from_db = self.start, self.end, self.init_list, self.model.from_db
        found = []
        for row in rows:
            obj = from_db(alias, init_list, row[start:end])
            for populator in self.populators:
                populator.populate(row, obj)
            for name, position in self.annotations:
                setattr(obj, name, row[position])
            found.append(obj)
        return found


#: A key whose QuerySet is run as usual on this connection (see the module's docstring).
_NOT_CACHED: Any = object()

#: The types :func:`fetch` takes values of: those a lookup's preparation keeps as they are
#: (``int(x)`` of an int, a CharField's ``to_python`` of a str).
_MARKED = (int, str)

#: The first marker of an int value: well inside a 32-bit integer column's range (Django
#: drops an ``IN`` value out of its field's range), and no id or constant a query holds.
_INT_MARKER = 1_987_654_000


def fetch(
    key: Hashable,
    model: type[Model],
    build: Callable[..., QuerySet[Any]],
    values: Sequence[Any],
    *,
    for_write: bool = False,
) -> list[Any]:
    """``list(build(*values))``, from the text compiled the first time ``key`` was read on
    this connection with as many values, executed with ``values`` (see the module's
    docstring).

    ``build`` makes the QuerySet (of ``model``, read through the router) from ``values``,
    ints and strs that its lookups take as they are (ids, names); other parameters are
    written in ``build`` itself and compiled with it. It is called with markers the first
    time, to find where each value goes, and with ``values`` when the text cannot be used.
    ``for_write``: it reads from the database rows are written to (``select_for_update``,
    which the QuerySet of ``build`` then has).
    """
    db = connections[(router.db_for_write if for_write else router.db_for_read)(model)]
    cache = _cache(db)
    shape = (key, len(values))
    statement = cache.get(shape)
    if statement is None:
        statement = _compile(build, values, db)
        if statement is None:
            return list(build(*values))  # not kept (a value not of _MARKED...): the ORM's
        if len(cache) >= MAX_STATEMENTS:
            cache.clear()
        cache[shape] = statement
    if statement is _NOT_CACHED or not _fits(statement, values):
        return list(build(*values))
    if statement.locks and db.get_autocommit():
        return list(build(*values))  # the ORM's error: no lock outside a transaction
    return statement.run(db, statement.params(values))


def _fits(statement: _Statement, values: Sequence[Any]) -> bool:
    # None included: the ORM compiles it as IS NULL, never a parameter.
    return all(type(value) is kind for value, kind in zip(values, statement.types, strict=True))


def _cache(db: BaseDatabaseWrapper) -> dict[Hashable, Any]:
    # On the wrapper: one per alias and thread, as its compiler's connection must be.
    cache: dict[Hashable, Any] | None = getattr(db, "_automate_compiled", None)
    if cache is None:
        cache = {}
        db._automate_compiled = cache  # type: ignore[attr-defined]
    return cache


def _markers(values: Sequence[Any]) -> list[Any] | None:
    markers: list[Any] = []
    for n, value in enumerate(values):
        if type(value) is int:
            markers.append(_INT_MARKER + n)
        elif type(value) is str:
            markers.append(f"automate-compiled-marker-{n}")
        else:
            return None
    return markers


def _compile(
    build: Callable[..., QuerySet[Any]], values: Sequence[Any], db: BaseDatabaseWrapper
) -> _Statement | None:
    """The statement ``build`` makes on ``db``; ``_NOT_CACHED`` when it cannot be kept,
    None when it is not to be remembered either (values of other types)."""
    markers = _markers(values)
    if markers is None:
        return None
    queryset = build(*markers)
    flat = queryset._iterable_class is FlatValuesListIterable  # type: ignore[attr-defined]
    if (
        queryset.db != db.alias
        or not (flat or queryset._iterable_class is ModelIterable)  # type: ignore[attr-defined]
        or queryset._prefetch_related_lookups  # type: ignore[attr-defined]
        or queryset._known_related_objects  # type: ignore[attr-defined]
    ):
        return _NOT_CACHED
    compiler = queryset.query.get_compiler(connection=db)
    try:
        sql, compiled = compiler.as_sql()
    except (EmptyResultSet, FullResultSet):
        return _NOT_CACHED
    fields = [s[0] for s in compiler.select[0 : compiler.col_count]]
    if not sql or compiler.has_composite_fields(fields):
        return _NOT_CACHED
    # Each marker exactly once among the parameters, as it was given, and nowhere in the
    # text: then its position is its value's. One equal to it in another type (psycopg's
    # Int4 of an int) is the value too, prepared: a place no new value would reach.
    slots: list[int] = []
    for marker in markers:
        found = [n for n, p in enumerate(compiled) if _equal(p, marker)]
        if len(found) != 1 or type(compiled[found[0]]) is not type(marker) or str(marker) in sql:
            return _NOT_CACHED
        slots.append(found[0])
    return _Statement(compiler, sql, list(compiled), slots, [type(v) for v in values], flat)


def _equal(param: Any, marker: Any) -> bool:
    try:
        return bool(param == marker)
    except Exception:  # a parameter that does not compare (an array...): not the marker
        return False

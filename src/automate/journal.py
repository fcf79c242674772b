"""The runner's pending writes: the records of a worker's pass, held until a flush point.

Writing each step record as it happens costs a commit per write, and a durable commit
costs an fsync (about 10 ms on an ordinary disk): ten of them per event capped a worker
at a few dozen events per second. A :class:`Journal` keeps the records of one outbox
item's pass in memory instead, and :meth:`Journal.write` sends them with bulk statements
inside the caller's transaction, so a batch of events settles in one commit.

Holding a record back is safe only where losing it is: if the worker dies first, the
item's lease runs out and the work is done again. That is why the runner writes (and
commits) a non-idempotent step's ``running`` record, with everything held before it,
before the call, and its outcome right after; only idempotent steps' records wait.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from django.db import connections, models, router
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field

from automate.flow import bulk


class Part(NamedTuple):
    """One write of a statement that makes many: its SQL, its parameters and the new row
    it inserts (``RETURNING`` its id), if it does; or the new rows (``rows``), in the
    order it inserts them, of a part that inserts many."""

    sql: str
    params: list[Any]
    new: models.Model | None = None
    rows: tuple[models.Model, ...] = ()


def saved(obj: models.Model, pk: object, alias: str) -> None:
    """``obj`` was inserted with id ``pk`` (what ``save()`` records of it)."""
    obj.pk = pk
    obj._state.adding, obj._state.db = False, alias


class Journal:
    """New rows and changed fields, written together by :meth:`write`."""

    def __init__(self) -> None:
        self._new: list[models.Model] = []
        self._changed: dict[tuple[type[models.Model], object], tuple[models.Model, set[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self._new or self._changed)

    def add(self, obj: models.Model) -> None:
        """A row to INSERT (``obj.pk`` still None)."""
        self._new.append(obj)

    def holds(self, obj: models.Model) -> bool:
        """Whether ``obj`` waits here to be inserted."""
        return any(pending is obj for pending in self._new)

    def update(self, obj: models.Model, fields: Iterable[str]) -> None:
        """Fields of an existing row to UPDATE; a row still waiting in :meth:`add` is
        inserted with its latest values, so nothing more is needed for it."""
        if obj.pk is None:
            if not any(pending is obj for pending in self._new):
                raise ValueError(f"{obj!r} has no primary key and was not added")
            return
        key = (type(obj), obj.pk)
        if key in self._changed:
            self._changed[key][1].update(fields)
        else:
            self._changed[key] = (obj, set(fields))

    def write(self) -> None:
        """INSERT and UPDATE everything held, in bulk; the caller owns the transaction.

        The journal is not emptied: the caller clears it once its transaction has
        committed; after a rollback it must not take these rows as written.
        """
        for model, objs in _grouped(self._new):
            model._default_manager.bulk_create(objs)
        by_fields: dict[tuple[type[models.Model], frozenset[str]], list[models.Model]] = {}
        for obj, names in self._changed.values():
            by_fields.setdefault((type(obj), frozenset(names)), []).append(obj)
        for (model, same_names), objs in by_fields.items():
            _update_rows(model, sorted(same_names), objs)

    def parts(self, connection: BaseDatabaseWrapper, when: str = "") -> list[Part] | None:
        """What :meth:`write` sends, as parts of one statement (data-modifying ``WITH``
        queries: one per row), each written only ``when`` that SQL condition holds; None
        when it cannot be said so (a new row points at another: :meth:`write` orders them).
        A part that inserts a row names it, for :func:`saved` once the statement is done."""
        parts: list[Part] = []
        for obj in self._new:
            insert = _insert_part(obj, connection, when)
            if insert is None:
                return None
            parts.append(Part(*insert, obj))
        for obj, names in self._changed.values():
            sql, fields = _update_sql(type(obj), sorted(names), connection, when)
            parts.append(Part(sql, _update_params(fields, obj, connection)))
        return parts

    def bulk_parts(self, connection: BaseDatabaseWrapper, when: str = "") -> list[Part] | None:
        """:meth:`parts` with one part per model and kind of write, as :meth:`write` sends
        them, for a statement that writes many items' journals (a batch's settlement):
        one ``INSERT ... SELECT ... FROM (VALUES ...)`` per model, one ``UPDATE ... FROM
        (VALUES ...)`` per model and set of fields. None when it cannot be said so (a new
        row points at another; more values than one statement takes)."""
        parts: list[Part] = []
        for model, objs in _grouped(self._new):
            insert = _insert_rows_part(model, objs, connection, when)
            if insert is None:
                return None
            parts.append(insert)
        by_fields: dict[tuple[type[models.Model], frozenset[str]], list[models.Model]] = {}
        for obj, names in self._changed.values():
            by_fields.setdefault((type(obj), frozenset(names)), []).append(obj)
        for (model, same_names), objs in by_fields.items():
            columns = sorted(same_names)
            attnames = [model._meta.get_field(name).attname for name in columns]  # type: ignore[union-attr]
            rows = [(obj.pk, [getattr(obj, a) for a in attnames]) for obj in objs]
            sql, params = bulk.statement(model, rows, columns, connection)
            parts.append(Part(f"{sql} AND {when}" if when else sql, params))
        if sum(len(part.params) for part in parts) > bulk.POSTGRES_MAX_PARAMS // 2:
            return None
        return parts

    def changes(self, model: type[models.Model]) -> set[object]:
        """The primary keys of the rows of ``model`` whose fields this journal changes."""
        return {pk for kind, pk in self._changed if kind is model}

    def overlaps(self, other: Journal) -> bool:
        """Whether both change one row (one statement must not UPDATE a row twice)."""
        return not self._changed.keys().isdisjoint(other._changed.keys())

    def forget_ids(self) -> None:
        """After a rollback: the rows to insert get no id from a write that was undone."""
        for obj in self._new:
            obj.pk = None
            obj._state.adding = True

    def clear(self) -> None:
        self._new.clear()
        self._changed.clear()

    def extend(self, other: Journal) -> None:
        """Take ``other``'s writes as well (to write many items' journals at once)."""
        self._new.extend(other._new)
        for key, (obj, fields) in other._changed.items():
            if key in self._changed:
                self._changed[key][1].update(fields)
            else:
                self._changed[key] = (obj, set(fields))


def _update_rows(model: type[models.Model], names: list[str], objs: list[models.Model]) -> None:
    """Give each row of ``objs`` its own values of ``names``: on PostgreSQL and SQLite
    :func:`automate.flow.bulk.update_each` (one ``UPDATE ... FROM (VALUES ...)`` per chunk
    of rows), else, and for a single row, one parameterised UPDATE per row sent with
    ``executemany``.

    A resumed batch changes two rows per run (the run, the record of the step it waited
    on): pipelined, ``executemany`` is one round trip, but the server still parses, plans
    and executes one statement per row, which cost more than the work itself.
    ``bulk_update``'s ``CASE WHEN`` costs far more Python per row. A single row is one
    statement either way, and the plain UPDATE by pk needs no join. A row deleted
    meanwhile is simply not updated. No ``save`` signals: none of the models a journal
    holds has receivers."""
    alias = router.db_for_write(model)
    connection = connections[alias]
    if connection.vendor not in ("postgresql", "sqlite") or len(objs) < 2:
        _update_each_row(model, names, objs, connection)
        return
    attnames = [model._meta.get_field(name).attname for name in names]  # type: ignore[union-attr]
    rows = {obj.pk: [getattr(obj, attname) for attname in attnames] for obj in objs}
    bulk.update_each(model, rows, names, using=alias)


def _update_each_row(
    model: type[models.Model],
    names: list[str],
    objs: list[models.Model],
    connection: BaseDatabaseWrapper,
) -> None:
    """One UPDATE per row (other databases, or a single row), pipelined by psycopg 3."""
    sql, fields = _update_sql(model, names, connection)
    rows = [_update_params(fields, obj, connection) for obj in objs]
    with connection.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(sql, rows[0])
        else:
            cursor.executemany(sql, rows)


def _update_sql(
    model: type[models.Model], names: Iterable[str], connection: BaseDatabaseWrapper, when: str = ""
) -> tuple[str, list[Field]]:
    """``UPDATE`` of one row's ``names`` (its pk the last parameter), and only ``when``
    that SQL condition holds; with the fields whose values :func:`_update_params` gives."""
    meta, quote = model._meta, connection.ops.quote_name
    fields: list[Field] = [meta.get_field(name) for name in names]  # type: ignore[misc]
    columns = [quote(str(field.column)) for field in fields]
    pk_column = quote(str(meta.pk.column))  # type: ignore[union-attr]
    # Only quoted names of the model's own columns are interpolated; values are parameters.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{c} = %s' for c in columns)} "  # noqa: S608
        f"WHERE {pk_column} = %s{f' AND {when}' if when else ''}"
    )
    return sql, fields


def _update_params(fields: list[Field], obj: models.Model, connection: BaseDatabaseWrapper) -> list:
    return [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields] + [
        obj.pk
    ]


def _insert_part(
    obj: models.Model, connection: BaseDatabaseWrapper, when: str
) -> tuple[str, list] | None:
    """``INSERT`` of ``obj`` (``RETURNING`` its pk), only ``when`` that SQL condition holds,
    its values prepared as ``bulk_create`` prepares them; None when that is not possible
    (a value is an expression, or a row it points at has no id yet)."""
    meta, quote = obj._meta, connection.ops.quote_name
    try:
        obj._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
    except ValueError:  # it points at a row written with it: Journal.write orders those
        return None
    fields = [
        f
        for f in meta.concrete_fields
        if not getattr(f, "generated", False) and (f is not meta.auto_field or obj.pk is not None)
    ]
    params = _insert_values(obj, fields, connection)
    if params is None:
        return None
    columns = ", ".join(quote(str(f.column)) for f in fields)
    # INSERT ... SELECT coerces each value to its column's type, as VALUES does.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "
        f"SELECT {', '.join(['%s'] * len(fields))}{f' WHERE {when}' if when else ''} "
        f"RETURNING {quote(str(meta.pk.column))}"  # type: ignore[union-attr]
    )
    return sql, params


def _insert_rows_part(
    model: type[models.Model], objs: list[models.Model], connection: BaseDatabaseWrapper, when: str
) -> Part | None:
    """One ``INSERT`` of ``objs`` (``RETURNING`` their pks, in order), only ``when`` that
    SQL condition holds; None as for :func:`_insert_part`, or when some have a pk set."""
    meta, quote = model._meta, connection.ops.quote_name
    if any(obj.pk is not None for obj in objs):
        return None
    fields = [
        f
        for f in meta.concrete_fields
        if not getattr(f, "generated", False) and f is not meta.auto_field
    ]
    # Cast as the column's type: a VALUES column takes its type from its values (see
    # automate.flow.bulk).
    row = "(" + ", ".join(f"CAST(%s AS {f.cast_db_type(connection)})" for f in fields) + ")"
    params: list[Any] = []
    for obj in objs:
        try:
            obj._prepare_related_fields_for_save(operation_name="bulk_create")  # type: ignore[attr-defined]
        except ValueError:  # it points at a row written with it
            return None
        values = _insert_values(obj, fields, connection)
        if values is None:
            return None
        params += values
    columns = ", ".join(quote(str(f.column)) for f in fields)
    # Quoted names of the model's own columns and their types; values are parameters.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) "  # noqa: S608
        f"SELECT * FROM (VALUES {', '.join([row] * len(objs))}) AS v"
        f"{f' WHERE {when}' if when else ''} "
        f"RETURNING {quote(str(meta.pk.column))}"  # type: ignore[union-attr]
    )
    return Part(sql, params, rows=tuple(objs))


def _insert_values(
    obj: models.Model, fields: list[Field], connection: BaseDatabaseWrapper
) -> list[Any] | None:
    """``obj``'s values of ``fields`` prepared as ``bulk_create`` prepares them; None when
    one is an expression (only an ORM save can send it)."""
    values = []
    for field in fields:
        value = field.pre_save(obj, True)
        if hasattr(value, "resolve_expression"):
            return None
        values.append(field.get_db_prep_save(value, connection))
    return values


def _grouped(objs: list[models.Model]) -> list[tuple[type[models.Model], list[models.Model]]]:
    """The rows by model, in as few runs as their references allow: a row joins the first
    run of its model that comes after every run holding a row it points at (a parked
    run's wait comes after its step record and its timer), so a batch of parked runs
    inserts its records, its timers and its waits with one statement each, not three per
    run. Rows of one model keep the order they were added in."""
    grouped: list[tuple[type[models.Model], list[models.Model]]] = []
    run_of: dict[int, int] = {}  # id() of a row -> the index of its run
    for obj in objs:
        after = -1
        for field in obj._meta.concrete_fields:
            if field.is_relation and field.is_cached(obj):  # type: ignore[attr-defined]
                target = field.get_cached_value(obj)  # type: ignore[attr-defined]
                after = max(after, run_of.get(id(target), -1))
        index = next(
            (i for i in range(after + 1, len(grouped)) if grouped[i][0] is type(obj)), None
        )
        if index is None:
            grouped.append((type(obj), []))
            index = len(grouped) - 1
        grouped[index][1].append(obj)
        run_of[id(obj)] = index
    return grouped

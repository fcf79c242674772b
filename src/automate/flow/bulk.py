"""One UPDATE that gives each row its own values: ``UPDATE ... FROM (VALUES ...)``.

Resuming a batch sets each run's ``resume_item`` (and each matched wait's event and
``resolved_by``) to a value of its own, and the runner's :class:`~automate.journal.Journal`
writes each held row's changed fields. Django's ``Case(When(pk=..., then=...))`` says
that too, but builds a filter per row in Python, which costs more than the statement; on
PostgreSQL and SQLite (3.33 or later) one ``UPDATE ... FROM (VALUES ...)`` per chunk of
rows does it with a parameter per value. Other backends take the ``Case`` form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Case, Q, Value, When

__all__ = ["statement", "update_each"]

#: PostgreSQL's limit on the parameters of one statement (its wire protocol counts them
#: in 16 bits); Django's PostgreSQL backend states none.
POSTGRES_MAX_PARAMS = 65535


def update_each(
    model: type[models.Model],
    rows: Mapping[Any, Sequence[Any]],
    columns: Sequence[str],
    *,
    same: Mapping[str, Any] | None = None,
    only_if: Mapping[str, Any] | None = None,
    only_if_each: Sequence[str] = (),
    using: str = DEFAULT_DB_ALIAS,
) -> int:
    """Set, on each row whose pk is a key of ``rows``, ``columns`` (field names) to that
    row's values and the fields of ``same`` to theirs; only rows that also have the
    values of ``only_if``, and, for each field of ``only_if_each``, the row's own value
    (given after its ``columns`` values). Values are prepared as ``save()`` prepares them
    (None is SQL NULL). Returns how many rows changed, summed over the statements: as
    many rows go in one as the database takes parameters.

    A row that no longer exists is simply not updated. No ``save`` signals."""
    if not rows:
        return 0
    same, only_if = dict(same or {}), dict(only_if or {})
    connection = connections[using]
    if connection.vendor not in ("postgresql", "sqlite"):
        return with_case(
            model, rows, columns, same=same, only_if=only_if, only_if_each=only_if_each
        )
    width = len(columns) + len(only_if_each) + 1
    size = _rows_per_statement(connection, width, len(same) + len(only_if), len(rows))
    items = list(rows.items())
    changed = 0
    with connection.cursor() as cursor:
        for start in range(0, len(items), size):
            sql, params = statement(
                model,
                items[start : start + size],
                columns,
                connection,
                same=same,
                only_if=only_if,
                only_if_each=only_if_each,
            )
            cursor.execute(sql, params)
            changed += cursor.rowcount
    return changed


def statement(
    model: type[models.Model],
    rows: Sequence[tuple[Any, Sequence[Any]]],
    columns: Sequence[str],
    connection: BaseDatabaseWrapper,
    *,
    same: Mapping[str, Any] | None = None,
    only_if: Mapping[str, Any] | None = None,
    only_if_each: Sequence[str] = (),
) -> tuple[str, list[Any]]:
    """The one statement of :func:`update_each` for ``rows`` (``(pk, values)`` pairs, as
    many as one statement takes) on PostgreSQL or SQLite, and its parameters; for a
    caller that sends it within a larger statement (a batch's settlement)."""
    same, only_if = dict(same or {}), dict(only_if or {})
    fields = [_field(model, name) for name in [*columns, *only_if_each]]
    params: list[Any] = [
        _field(model, name).get_db_prep_save(value, connection) for name, value in same.items()
    ]
    for pk, values in rows:
        params.append(pk)
        for i, (field, value) in enumerate(zip(fields, values, strict=True)):
            if i < len(columns):
                params.append(field.get_db_prep_save(value, connection))
            else:
                params.append(field.get_db_prep_value(value, connection))
    params += [
        _field(model, name).get_db_prep_value(value, connection) for name, value in only_if.items()
    ]
    sql = _update_from_values_sql(
        model, fields, len(columns), [*same], [*only_if], len(rows), connection
    )
    return sql, params


def _rows_per_statement(connection: BaseDatabaseWrapper, width: int, fixed: int, rows: int) -> int:
    """How many rows of ``width`` parameters one statement that also carries ``fixed``
    others may hold on ``connection``."""
    limit = connection.features.max_query_params or POSTGRES_MAX_PARAMS
    return max(1, min(rows, (limit - fixed) // width))


def _update_from_values_sql(
    model: type[models.Model],
    fields: list[models.Field],
    set_count: int,
    same: list[str],
    only_if: list[str],
    rows: int,
    connection: BaseDatabaseWrapper,
) -> str:
    """The ``UPDATE`` of :func:`update_each` for ``rows`` rows, each given as its pk and
    then its values of ``fields``: the first ``set_count`` are set, the others compared.

    On PostgreSQL each value is cast to its column's type: a ``VALUES`` column takes its
    type from its values, so one whose values are all NULL (or untyped literals, as
    Django's client-side binding sends strings) would be ``text``, which a ``jsonb`` or
    ``timestamptz`` column does not take. SQLite converts by the column's affinity."""
    meta, quote = model._meta, connection.ops.quote_name
    table = quote(meta.db_table)

    def value(i: int, field: models.Field) -> str:
        if connection.vendor == "postgresql":
            return f"CAST(v.column{i} AS {field.cast_db_type(connection)})"
        return f"v.column{i}"

    pk: models.Field = meta.pk  # type: ignore[assignment]
    sets, where = [], [f"{table}.{quote(str(pk.column))} = {value(1, pk)}"]
    for i, field in enumerate(fields, start=2):
        if i - 2 < set_count:
            sets.append(f"{quote(str(field.column))} = {value(i, field)}")
        else:
            where.append(f"{table}.{quote(str(field.column))} = {value(i, field)}")
    sets += [f"{quote(str(_field(model, name).column))} = %s" for name in same]
    where += [f"{table}.{quote(str(_field(model, name).column))} = %s" for name in only_if]
    row = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    # Only quoted names of the model's own columns, their types and placeholders are
    # interpolated; values are parameters.
    return (
        f"UPDATE {table} SET {', '.join(sets)} "  # noqa: S608
        f"FROM (VALUES {', '.join([row] * rows)}) AS v WHERE {' AND '.join(where)}"
    )


def _field(model: type[models.Model], name: str) -> models.Field:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field):
        raise TypeError(f"{model.__name__}.{name} is not a concrete field")
    return field


def with_case(
    model: type[models.Model],
    rows: Mapping[int, Sequence[Any]],
    columns: Sequence[str],
    *,
    same: Mapping[str, Any],
    only_if: Mapping[str, Any],
    only_if_each: Sequence[str] = (),
) -> int:
    """:func:`update_each` with ``Case(When(...))``, for the other backends.

    A column whose every value is None is set to NULL, with no ``CASE``: a ``CASE`` whose
    branches are all NULL has no type of its own, and PostgreSQL, for one, makes it
    ``text``, which a ``jsonb`` or ``timestamptz`` column refuses."""
    per_row: dict[str, Any] = {}
    chosen = Q(pk__in=list(rows))
    if only_if_each:
        chosen = Q()
        for pk, values in rows.items():
            chosen |= Q(pk=pk, **dict(zip(only_if_each, values[len(columns) :], strict=True)))
    for i, name in enumerate(columns):
        field = _field(model, name)
        if all(values[i] is None for values in rows.values()):
            per_row[field.attname] = None
            continue
        whens = [
            When(pk=pk, then=Value(values[i], output_field=field)) for pk, values in rows.items()
        ]
        per_row[field.attname] = Case(*whens, output_field=field)
    return model._default_manager.filter(chosen, **only_if).update(**per_row, **same)

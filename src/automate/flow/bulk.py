"""One UPDATE that gives each row its own values: ``UPDATE ... FROM (VALUES ...)``.

Resuming a batch sets each run's ``resume_item`` (and each matched wait's event and
``resolved_by``) to a value of its own. Django's ``Case(When(pk=..., then=...))`` says
that too, but builds a filter per row in Python, which costs more than the statement; on
PostgreSQL and SQLite (3.33 or later) one ``UPDATE ... FROM (VALUES ...)`` does it with a
parameter per value. Other backends take the ``Case`` form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connection, models
from django.db.models import Case, Q, Value, When

__all__ = ["update_each"]


def update_each(
    model: type[models.Model],
    rows: Mapping[int, Sequence[Any]],
    columns: Sequence[str],
    *,
    same: Mapping[str, Any] | None = None,
    only_if: Mapping[str, Any] | None = None,
    only_if_each: Sequence[str] = (),
) -> int:
    """Set, on each row whose pk is a key of ``rows``, ``columns`` (field names) to that
    row's values and the fields of ``same`` to theirs; only rows that also have the
    values of ``only_if``, and, for each field of ``only_if_each``, the row's own value
    (given after its ``columns`` values). Returns how many rows changed."""
    if not rows:
        return 0
    same, only_if = dict(same or {}), dict(only_if or {})
    meta = model._meta
    fields = [_field(model, name) for name in [*columns, *only_if_each]]
    vendor = connection.vendor
    if vendor not in ("postgresql", "sqlite"):
        return with_case(
            model, rows, columns, same=same, only_if=only_if, only_if_each=only_if_each
        )
    quote = connection.ops.quote_name
    sets, params = [], []
    for i, field in enumerate(fields[: len(columns)]):
        source = f"v.column{i + 2}"
        if isinstance(field, models.JSONField) and vendor == "postgresql":
            source = f"CAST({source} AS jsonb)"
        sets.append(f"{quote(str(field.column))} = {source}")
    for name, value in same.items():
        field = _field(model, name)
        sets.append(f"{quote(str(field.column))} = %s")
        params.append(field.get_db_prep_value(value, connection))
    row_sql = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    for pk, values in rows.items():
        params.append(pk)
        for field, value in zip(fields, values, strict=True):
            if isinstance(field, models.JSONField):
                params.append(json.dumps(value))
            else:
                params.append(field.get_db_prep_value(value, connection))
    table = quote(meta.db_table)
    where = [f"{table}.{quote(str(meta.pk.column))} = v.column1"]
    for i, field in enumerate(fields[len(columns) :], start=len(columns)):
        where.append(f"{table}.{quote(str(field.column))} = v.column{i + 2}")
    tail: list[Any] = []
    for name, value in only_if.items():
        field = _field(model, name)
        where.append(f"{table}.{quote(str(field.column))} = %s")
        tail.append(field.get_db_prep_value(value, connection))
    # Only quoted table and column names and placeholders go into the text; every value
    # is a parameter.
    rows_sql = ", ".join([row_sql] * len(rows))
    sql = f"UPDATE {table} SET {', '.join(sets)} FROM (VALUES {rows_sql}) AS v WHERE {' AND '.join(where)}"  # noqa: S608, E501
    params += tail
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


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
    """:func:`update_each` with ``Case(When(...))``, for the other backends."""
    per_row: dict[str, Any] = {}
    chosen = Q(pk__in=list(rows))
    if only_if_each:
        chosen = Q()
        for pk, values in rows.items():
            chosen |= Q(pk=pk, **dict(zip(only_if_each, values[len(columns) :], strict=True)))
    for i, name in enumerate(columns):
        field = _field(model, name)
        whens = [
            When(pk=pk, then=Value(values[i], output_field=field)) for pk, values in rows.items()
        ]
        per_row[field.attname] = Case(*whens, output_field=field)
    return model._default_manager.filter(chosen, **only_if).update(**per_row, **same)

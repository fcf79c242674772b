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

from django.db import connections, models, router


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
    """One parameterised UPDATE per row, sent with ``executemany`` (pipelined by psycopg 3:
    one round trip). ``bulk_update``'s ``CASE WHEN`` costs far more Python per row, and
    ``save(update_fields=...)`` several times this for one row (a non-idempotent step's
    outcome is one row, written once per call). No ``save`` signals: none of the models a
    journal holds has receivers."""
    connection = connections[router.db_for_write(model)]
    meta, quote = model._meta, connection.ops.quote_name
    fields = [meta.get_field(name) for name in names]
    columns = [quote(str(field.column)) for field in fields]  # type: ignore[union-attr]
    pk_column = quote(str(meta.pk.column))  # type: ignore[union-attr]
    # Only quoted names of the model's own columns are interpolated; values are parameters.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(f'{c} = %s' for c in columns)} "  # noqa: S608
        f"WHERE {pk_column} = %s"
    )
    rows = [
        [field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields]  # type: ignore[union-attr]
        + [obj.pk]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


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

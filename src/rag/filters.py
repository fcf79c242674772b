"""Metadata filters, one syntax for every built-in store.

The syntax is Pinecone's, so a filter written for one store works on the others::

    {"lang": "en"}                           # shorthand for {"lang": {"$eq": "en"}}
    {"year": {"$gte": 2020}, "tags": {"$in": ["billing", "account"]}}

Fields are ANDed; operators are ``$eq $ne $gt $gte $lt $lte $in $nin``. When a stored value
is a list, a positive operator matches when any element matches (``{"tags": "a"}`` finds
``{"tags": ["a", "b"]}``) and ``$ne``/``$nin`` match when no element does. Comparisons only
match values of the same kind (a number never equals a string). A malformed filter is an
``INVALID_ARGUMENT`` error naming the offending part, before any store is queried.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from automate_core.providers.errors import invalid_argument

_FIELD_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}$")
_SCALAR_OPS = {"$eq": "==", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_LIST_OPS = {"$in", "$nin"}
_NEGATIVE = {"$ne", "$nin"}


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: Any


def _check_scalar(field: str, op: str, value: Any) -> None:
    if isinstance(value, bool) or value is None:
        if op not in ("$eq", "$ne"):
            raise invalid_argument(field, f"filter {field!r}: {op} needs a number or a string")
        if value is None:
            raise invalid_argument(field, f"filter {field!r}: null cannot be compared")
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid_argument(field, f"filter {field!r}: {op} needs a finite number")
    if isinstance(value, int | float):
        return
    if isinstance(value, str):
        return
    raise invalid_argument(
        field,
        f"filter {field!r}: {op} takes a string, number or boolean, not {type(value).__name__}",
    )


def parse(filters: dict | None) -> list[Condition]:
    """Validate ``filters`` and return its conditions (an empty list for no filter)."""
    if filters is None:
        return []
    if not isinstance(filters, dict):
        raise invalid_argument(None, "filters must be an object of field: condition")
    conditions: list[Condition] = []
    for field, spec in filters.items():
        if not isinstance(field, str) or not _FIELD_RE.match(field):
            raise invalid_argument(
                str(field),
                f"filter field {field!r} is not a valid name "
                "(letters, digits, '_', '.', '-'; at most 100)",
            )
        if not isinstance(spec, dict):
            spec = {"$eq": spec}
        if not spec:
            raise invalid_argument(field, f"filter {field!r} has no operator")
        for op, value in spec.items():
            if op in _SCALAR_OPS:
                _check_scalar(field, op, value)
            elif op in _LIST_OPS:
                if not isinstance(value, list) or not value:
                    raise invalid_argument(field, f"filter {field!r}: {op} needs a non-empty list")
                for item in value:
                    _check_scalar(field, "$eq", item)
            else:
                known = ", ".join([*_SCALAR_OPS, *sorted(_LIST_OPS)])
                raise invalid_argument(
                    field, f"filter {field!r}: unknown operator {op!r} (known: {known})"
                )
            conditions.append(Condition(field, op, value))
    return conditions


# -- In Python (the local store) ---------------------------------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _compare(stored: Any, op: str, value: Any) -> bool:
    if _kind(stored) != _kind(value):
        return False
    if op in ("$eq", "$ne"):
        return bool(stored == value)
    if isinstance(stored, bool) or not isinstance(stored, int | float | str):
        return False
    return {
        "$gt": stored > value,
        "$gte": stored >= value,
        "$lt": stored < value,
        "$lte": stored <= value,
    }[op]


def _any_element(stored: Any, op: str, value: Any) -> bool:
    items = stored if isinstance(stored, list) else [stored]
    if op in ("$in", "$nin"):
        return any(_compare(item, "$eq", v) for item in items for v in value)
    return any(_compare(item, "$eq" if op == "$ne" else op, value) for item in items)


def matches(metadata: dict[str, Any], conditions: list[Condition]) -> bool:
    """Whether ``metadata`` satisfies every condition."""
    for condition in conditions:
        present = condition.field in metadata
        stored = metadata.get(condition.field)
        hit = present and _any_element(stored, condition.op, condition.value)
        if condition.op in _NEGATIVE:
            hit = not hit
        if not hit:
            return False
    return True


# -- In PostgreSQL (the pgvector store) --------------------------------------------------


def to_sql(conditions: list[Condition], column: str = "metadata") -> tuple[str, list[Any]]:
    """A SQL boolean over the ``jsonb`` ``column`` and its parameters.

    Each condition is a ``jsonb_path_exists`` with the value passed as a jsonpath variable,
    so values are never spliced into SQL or into the path; lax mode gives the "any element
    of a list" rule for free, and jsonpath comparisons are false across kinds.
    """
    parts: list[str] = []
    params: list[Any] = []
    for condition in conditions:
        key = json.dumps(condition.field)
        if condition.op in _LIST_OPS:
            tests = " || ".join(f"@ == $v{i}" for i in range(len(condition.value)))
            variables = {f"v{i}": v for i, v in enumerate(condition.value)}
        else:
            symbol = "==" if condition.op == "$ne" else _SCALAR_OPS[condition.op]
            tests = f"@ {symbol} $v0"
            variables = {"v0": condition.value}
        path = f"$.{key} ? ({tests})"
        expression = f"jsonb_path_exists({column}, %s::jsonpath, %s::jsonb)"
        if condition.op in _NEGATIVE:
            expression = f"NOT {expression}"
        parts.append(expression)
        params.extend([path, json.dumps(variables)])
    return " AND ".join(parts), params


def index_sql(
    conditions: list[Condition], column: str = "metadata"
) -> tuple[str, list[Any], list[Condition]] | None:
    """The ``$eq``/``$in`` conditions as SQL a GIN ``jsonb_path_ops`` index can answer, its
    parameters, and the conditions left for :func:`to_sql`; None without such a condition.

    ``column @? path`` is ``jsonb_path_exists`` without variables: the same lax jsonpath,
    so the same rows, but GIN can only read a path's constants, so the values are written
    into the path as JSON literals (``parse`` leaves only strings, finite numbers and
    booleans, whose JSON spelling is valid jsonpath). The path is still a parameter.
    Ranges and negations have no index form.
    """
    parts: list[str] = []
    params: list[Any] = []
    rest: list[Condition] = []
    for condition in conditions:
        if condition.op not in ("$eq", "$in"):
            rest.append(condition)
            continue
        values = condition.value if condition.op == "$in" else [condition.value]
        tests = " || ".join(f"@ == {json.dumps(value)}" for value in values)
        parts.append(f"{column} @? %s::jsonpath")
        params.append(f"$.{json.dumps(condition.field)} ? ({tests})")
    if not parts:
        return None
    return " AND ".join(parts), params, rest

"""Hypothesis strategies for action inputs, driven by an action's JSON Schema.

Written here rather than taken from ``hypothesis-jsonschema`` because that package (0.23.1,
its latest release) fails with current Hypothesis versions (it calls a private API that
Hypothesis removed). :func:`from_schema` need not be exact: the fuzz contract asks the JSON
Schema validator whether each generated value is valid and expects a different outcome
for each kind, so a value "shaped like" the schema is as useful as a perfectly valid one.
:func:`valid_inputs` keeps only the values the validator accepts.
"""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable
from jsonschema import Draft202012Validator

__all__ = ["action_inputs", "json_values", "minimal_input", "valid_inputs"]

_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)


def json_values(max_leaves: int = 10) -> st.SearchStrategy[Any]:
    """Any JSON value (objects, arrays, scalars), small."""
    return st.recursive(
        _SCALAR,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(max_size=10), children, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def action_inputs(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Mostly values shaped by ``schema``, sometimes arbitrary JSON (to probe rejection)."""
    return st.one_of(from_schema(schema), from_schema(schema), json_values())


def valid_inputs(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values ``schema`` accepts (generated from its shape, checked by its validator)."""
    validator = Draft202012Validator(schema)
    return from_schema(schema).filter(validator.is_valid)


def minimal_input(schema: dict[str, Any]) -> Any:
    """The simplest value ``schema`` accepts (the required fields only, smallest values),
    the same on every run; ``None`` when none is found."""
    try:
        return find(
            valid_inputs(schema),
            lambda value: True,
            settings=settings(
                database=None, max_examples=200, suppress_health_check=list(HealthCheck)
            ),
            random=random.Random(0),
        )
    except (NoSuchExample, Unsatisfiable):
        return None


def from_schema(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by a JSON Schema (a best effort over the common keywords)."""
    if not isinstance(schema, dict) or depth > 4:
        return json_values(4)
    if "const" in schema:
        return st.just(schema["const"])
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return st.sampled_from(schema["enum"])
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if isinstance(options, list) and options:
            return st.one_of([from_schema(option, depth + 1) for option in options])
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        return st.one_of([from_schema({**schema, "type": one}, depth) for one in kind])
    maker = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if maker is None:
        return json_values(4)
    return maker(schema, depth)


def _string(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        return st.from_regex(pattern, fullmatch=False)
    low = schema.get("minLength", 0)
    high = schema.get("maxLength", max(low, 40))
    return st.text(min_size=low, max_size=max(low, min(high, low + 40)))


def _integer(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    low = _bound(schema.get("minimum"), math.ceil)
    high = _bound(schema.get("maximum"), math.floor)
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        low = math.floor(schema["exclusiveMinimum"]) + 1
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        high = math.ceil(schema["exclusiveMaximum"]) - 1
    if low is not None and high is not None and low > high:
        return st.nothing()
    return st.integers(min_value=low, max_value=high)


def _bound(value: Any, rounding: Any) -> int | None:
    return rounding(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _number(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        _integer(schema, depth),
        st.floats(
            min_value=schema.get("minimum"),
            max_value=schema.get("maximum"),
            allow_nan=False,
            allow_infinity=False,
        ),
    )


def _array(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    low = schema.get("minItems", 0)
    high = schema.get("maxItems", low + 4)
    return st.lists(from_schema(schema.get("items", {}), depth + 1), min_size=low, max_size=high)


def _object(schema: dict[str, Any], depth: int) -> st.SearchStrategy[Any]:
    properties = schema.get("properties") or {}
    required = [name for name in schema.get("required", []) if isinstance(name, str)]
    fixed = {name: from_schema(properties.get(name, {}), depth + 1) for name in required}
    optional = {
        name: from_schema(sub, depth + 1) for name, sub in properties.items() if name not in fixed
    }
    shaped = st.fixed_dictionaries(fixed, optional=optional)
    additional = schema.get("additionalProperties", True)
    if additional is False:
        return shaped
    names = schema.get("propertyNames")
    keys: st.SearchStrategy[str] = (
        _string({"type": "string", **names}, depth + 1).filter(lambda k: isinstance(k, str))
        if isinstance(names, dict)
        else st.text(max_size=10)
    )
    keys = keys.filter(lambda k: k not in properties)
    values = from_schema(additional, depth + 1) if isinstance(additional, dict) else json_values(3)
    extra = st.dictionaries(keys, values, max_size=2)
    return st.tuples(shaped, extra).map(lambda pair: {**pair[1], **pair[0]})


_BY_TYPE = {
    "string": _string,
    "integer": _integer,
    "number": _number,
    "boolean": lambda schema, depth: st.booleans(),
    "null": lambda schema, depth: st.none(),
    "array": _array,
    "object": _object,
}

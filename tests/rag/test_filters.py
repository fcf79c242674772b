from __future__ import annotations

import pytest

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag import filters


def test_parse__shorthand_is_eq():
    assert filters.parse({"lang": "en"}) == [filters.Condition("lang", "$eq", "en")]


def test_parse__none_and_empty_mean_no_filter():
    assert filters.parse(None) == []
    assert filters.parse({}) == []


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        (["lang"], "filters must be an object"),
        ({"bad field!": 1}, "not a valid name"),
        ({"year": {"$between": [1, 2]}}, "unknown operator '$between'"),
        ({"year": {}}, "has no operator"),
        ({"tags": {"$in": []}}, "needs a non-empty list"),
        ({"tags": {"$in": "a"}}, "needs a non-empty list"),
        ({"year": {"$gt": True}}, "needs a number or a string"),
        ({"year": {"$eq": None}}, "null cannot be compared"),
        ({"year": {"$eq": {"x": 1}}}, "not dict"),
        ({"year": {"$lt": float("inf")}}, "needs a finite number"),
        ({"year": {"$in": [1, float("nan")]}}, "needs a finite number"),
    ],
)
def test_parse__rejects_malformed_filters(bad, fragment):
    with pytest.raises(AutomateError) as info:
        filters.parse(bad)
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert fragment in info.value.message


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"lang": "en"}, True),
        ({"lang": "de"}, False),
        ({"year": {"$gte": 2020, "$lt": 2025}}, True),
        ({"year": {"$gt": 2024}}, False),
        ({"year": "2024"}, False),  # a string never equals a number
        ({"tags": "billing"}, True),  # any element of a list
        ({"tags": {"$in": ["x", "account"]}}, True),
        ({"tags": {"$nin": ["account"]}}, False),
        ({"tags": {"$ne": "other"}}, True),
        ({"draft": False}, True),
        ({"draft": 0}, False),  # a boolean is not a number
        ({"missing": {"$ne": "x"}}, True),
        ({"missing": "x"}, False),
    ],
)
def test_matches__semantics(flt, expected):
    metadata = {"lang": "en", "year": 2024, "tags": ["billing", "account"], "draft": False}
    assert filters.matches(metadata, filters.parse(flt)) is expected


def test_to_sql__values_are_parameters_never_sql():
    sql, params = filters.to_sql(filters.parse({"lang": "x'; DROP TABLE t; --"}))
    assert "DROP" not in sql
    assert sql == "jsonb_path_exists(metadata, %s::jsonpath, %s::jsonb)"
    assert params == ['$."lang" ? (@ == $v0)', '{"v0": "x\'; DROP TABLE t; --"}']


def test_index_sql__equalities_become_jsonpath_literals_the_rest_is_left():
    parsed = filters.parse({"tags": {"$in": ["a", 2.5, True]}, "year": {"$gte": 2020}, "a.b": "x"})
    sql, params, rest = filters.index_sql(parsed)
    assert sql == "metadata @? %s::jsonpath AND metadata @? %s::jsonpath"
    assert params == ['$."tags" ? (@ == "a" || @ == 2.5 || @ == true)', '$."a.b" ? (@ == "x")']
    assert rest == [filters.Condition("year", "$gte", 2020)]


def test_index_sql__strings_are_json_literals_inside_the_path_parameter():
    sql, params, _ = filters.index_sql(filters.parse({"lang": 'x") || (@ != "'}))
    assert sql == "metadata @? %s::jsonpath"
    assert params == ['$."lang" ? (@ == "x\\") || (@ != \\"")']


@pytest.mark.parametrize(
    "flt",
    [
        None,
        {"year": {"$lt": 2020}},
        {"lang": {"$ne": "en"}},
        {"tags": {"$nin": ["a"]}},
        {"year": {"$gt": 1, "$lte": 9}},
    ],
)
def test_index_sql__none_without_an_equality(flt):
    assert filters.index_sql(filters.parse(flt)) is None

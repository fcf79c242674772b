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


def test_index_sql__equality_looks_for_each_value_in_three_shapes():
    sql, params = filters.index_sql(filters.parse({"tags": {"$in": ["a", 2]}, "lang": "en"}))
    assert sql == "metadata @> ANY(%s::jsonb[]) AND metadata @> ANY(%s::jsonb[])"
    assert params == [
        [
            *('{"tags": "a"}', '{"tags": ["a"]}', '{"tags": [["a"]]}'),
            *('{"tags": 2}', '{"tags": [2]}', '{"tags": [[2]]}'),
        ],
        ['{"lang": "en"}', '{"lang": ["en"]}', '{"lang": [["en"]]}'],
    ]


def test_index_sql__keeps_only_the_conditions_containment_can_express():
    sql, params = filters.index_sql(filters.parse({"year": {"$gte": 2020}, "lang": "en"}))
    assert sql == "metadata @> ANY(%s::jsonb[])"
    assert params == [['{"lang": "en"}', '{"lang": ["en"]}', '{"lang": [["en"]]}']]


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

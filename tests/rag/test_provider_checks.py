"""check_query: the one check of ``retrieve``'s arguments the built-in stores share."""

from __future__ import annotations

import pytest

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.filters import Condition
from rag.providers._common import check_query


def test_check_query__returns_the_vector_as_floats_and_the_parsed_conditions():
    vector, conditions = check_query("store", [1, 0.5], 3, {"lang": "en"})

    assert vector == [1.0, 0.5]
    assert conditions == [Condition(field="lang", op="$eq", value="en")]
    assert check_query("store", [1], 1, None) == ([1.0], [])


@pytest.mark.parametrize(
    ("embedding", "top_k", "filters", "message"),
    [
        ([1.0], 0, None, "top_k must be an integer from 1 to 1000, not 0"),
        ([], 5, None, "query_embedding must be a non-empty list of numbers"),
        ([1.0], 5, {"lang": {"$near": "en"}}, "filter 'lang'"),
    ],
)
def test_check_query__a_bad_argument_is_invalid_argument_naming_it(
    embedding, top_k, filters, message
):
    with pytest.raises(AutomateError) as raised:
        check_query("store", embedding, top_k, filters)

    assert raised.value.code == ErrorCodes.INVALID_ARGUMENT
    assert message in raised.value.message

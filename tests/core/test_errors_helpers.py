"""The shared constructors of INVALID_ARGUMENT errors in automate_core.providers.errors."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from automate_core.providers.errors import (
    ErrorCodes,
    invalid_argument,
    invalid_config,
    validation_problems,
)


class _Inner(BaseModel):
    port: int = Field(ge=1)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    inner: _Inner


def _problem(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        _Config.model_validate(data)
    return info.value


def test_invalid_argument__names_the_field_in_details_and_is_never_retried():
    error = invalid_argument("config.url", "config.url must be absolute")

    assert error.code is ErrorCodes.INVALID_ARGUMENT
    assert error.message == "config.url must be absolute"
    assert error.retryable is False
    assert error.provider is None
    assert error.details == {"field": "config.url"}


def test_invalid_argument__keeps_extra_details_and_the_provider():
    error = invalid_argument("top_k", "top_k is too big", provider="pinecone", limit=1000)

    assert error.provider == "pinecone"
    assert error.details == {"field": "top_k", "limit": 1000}
    assert str(error) == "[pinecone:invalid_argument] top_k is too big"


def test_invalid_argument__without_a_field_has_only_the_given_details():
    error = invalid_argument(None, "ids must be a list", id="doc-1")

    assert error.details == {"id": "doc-1"}
    assert invalid_argument(None, "bad").details == {}


def test_validation_problems__dotted_paths_and_messages_in_pydantic_order():
    problems = validation_problems(_problem({"inner": {"port": 0}, "extra": 1}))

    assert problems == [
        ("url", "Field required"),
        ("inner.port", "Input should be greater than or equal to 1"),
        ("extra", "Extra inputs are not permitted"),
    ]


def test_validation_problems__a_problem_with_the_whole_object_has_an_empty_path():
    assert validation_problems(_problem("not an object")) == [
        ("", "Input should be a valid dictionary or instance of _Config")
    ]


def test_validation_problems__never_carries_the_input_values():
    exc = _problem({"url": "x", "inner": {"port": "sk-live-secret-value"}})

    assert "sk-live-secret-value" not in repr(validation_problems(exc))


def test_invalid_config__lists_every_problem_and_the_failing_paths():
    error = invalid_config(_problem({"inner": {"port": 0}}), "acme", provider="acme")

    assert error.code is ErrorCodes.INVALID_ARGUMENT
    assert error.retryable is False
    assert error.provider == "acme"
    assert error.message == (
        "invalid configuration for acme: url: Field required; "
        "inner.port: Input should be greater than or equal to 1"
    )
    assert error.details == {"fields": ["url", "inner.port"]}


def test_invalid_config__a_whole_object_problem_reads_as_config():
    error = invalid_config(_problem([1, 2]), "LLM provider offline")

    assert error.message.startswith("invalid configuration for LLM provider offline: (config): ")
    assert error.details == {"fields": [""]}

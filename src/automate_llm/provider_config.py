"""A provider's configuration checked against its ``config_schema()``.

Shared by the profile model (which refuses a bad configuration however the row is written)
and by :mod:`automate_llm.calls` (which builds the provider), so it sits below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from automate_core.providers.errors import AutomateError, ErrorCodes
from automate_llm.providers.base import BaseLLMProvider


def validate_provider_config(cls: type[BaseLLMProvider], config: Mapping[str, Any]) -> BaseModel:
    """Validate ``config`` with the provider's schema; INVALID_ARGUMENT names the fields."""
    try:
        return cls.config_schema().model_validate(dict(config))
    except ValidationError as exc:
        raise config_error(cls, exc) from None


def config_error(cls: type[BaseLLMProvider], exc: ValidationError) -> AutomateError:
    """The INVALID_ARGUMENT error for a configuration the provider's schema refused."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}"
        for err in exc.errors(include_input=False)
    )
    return AutomateError(
        ErrorCodes.INVALID_ARGUMENT,
        f"invalid configuration for LLM provider {cls.key}: {problems}",
        provider=cls.key or None,
        retryable=False,
        details={"fields": [".".join(str(p) for p in e["loc"]) for e in exc.errors()]},
    )

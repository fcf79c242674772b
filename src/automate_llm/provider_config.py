"""A provider's configuration checked against its ``config_schema()``.

Shared by the profile model (which refuses a bad configuration however the row is written)
and by :mod:`automate_llm.calls` (which builds the provider), so it sits below both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from automate_core.providers.errors import AutomateError, invalid_config
from automate_llm.providers.base import BaseLLMProvider


def validate_provider_config(cls: type[BaseLLMProvider], config: Mapping[str, Any]) -> BaseModel:
    """Validate ``config`` with the provider's schema; INVALID_ARGUMENT names the fields."""
    try:
        return cls.config_schema().model_validate(dict(config))
    except ValidationError as exc:
        raise config_error(cls, exc) from None


def config_error(cls: type[BaseLLMProvider], exc: ValidationError) -> AutomateError:
    """The INVALID_ARGUMENT error for a configuration the provider's schema refused."""
    return invalid_config(exc, f"LLM provider {cls.key}", provider=cls.key or None)

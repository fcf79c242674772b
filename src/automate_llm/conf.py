"""The LLM app's settings (see :mod:`automate_core.conf` for how they are read and checked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automate_core.conf import AppSettings

__all__ = ["LLMSettings", "settings"]


@dataclass(frozen=True)
class LLMSettings(AppSettings):
    # Dotted path (or the callable itself) of factory(provider_key, *, asynchronous,
    # timeout) -> the HTTP client handed to the openai/anthropic SDKs; None: the SDK's own.
    LLM_HTTP_CLIENT_FACTORY: str | Callable[..., Any] | None = None


settings = LLMSettings.lazy()

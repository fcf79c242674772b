"""The LLM app's settings (see :mod:`automate_core.conf` for how they are read and checked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from automate_core.conf import AppSettings, setting

__all__ = ["LLMSettings", "settings"]


@dataclass(frozen=True)
class LLMSettings(AppSettings):
    # Dotted path (or the callable itself) of factory(provider_key, *, asynchronous,
    # timeout) -> the HTTP client handed to the openai/anthropic SDKs; None: the SDK's own.
    LLM_HTTP_CLIENT_FACTORY: str | Callable[..., Any] | None = None
    # The largest answer (bytes on the wire, a stream's whole body) an LLM call accepts.
    LLM_MAX_RESPONSE_BYTES: int = setting(10 * 1024 * 1024, positive=True)


settings = LLMSettings.lazy()

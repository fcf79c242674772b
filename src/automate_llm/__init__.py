"""LLM providers for Django Automate: a base class, a registry, built-ins and usage records.

The names a provider module or a caller needs are importable from the package::

    from automate_llm import BaseLLMProvider, ChatResult, Usage, register_provider
    from automate_llm import run_chat

The longer paths (``automate_llm.providers.base``, ``automate_llm.registry`` ...) keep
working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automate_core import __version__ as __version__
from automate_core.exports import lazy_exports
from automate_llm.providers.base import BaseLLMProvider, ChatChunk, ChatResult, ToolCall, Usage
from automate_llm.registry import get_provider, register_provider
from automate_llm.retry import RetryPolicy

if TYPE_CHECKING:
    from automate_llm.calls import LLMCall, run_chat

__all__ = [
    "BaseLLMProvider",
    "ChatChunk",
    "ChatResult",
    "LLMCall",
    "RetryPolicy",
    "ToolCall",
    "Usage",
    "get_provider",
    "register_provider",
    "run_chat",
]

# Django imports this package while it loads the apps; calls records usage rows (models), so
# it loads on first access.
_LAZY = {
    "LLMCall": "automate_llm.calls",
    "run_chat": "automate_llm.calls",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

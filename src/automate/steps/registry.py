"""The registry of step types (``register_step`` / ``get_step``), filled in ``ready()``."""

from __future__ import annotations

from automate.steps.base import StepExecutor, check_executor_shape
from automate_core.registry import NotRegistered, Registry

__all__ = ["BUILTIN_STEPS", "NotRegistered", "get_step", "load", "register_step", "step_types"]

#: Modules holding the built-in step types, registered by ``automate``'s ``ready()``.
BUILTIN_STEPS = (
    "automate.steps.connector_action.ConnectorActionStep",
    "automate.steps.http_request.HttpRequestStep",
    "automate.steps.filter.FilterStep",
    "automate.steps.mcp_tool.MCPToolStep",
)

#: Step types whose app is optional: registered only when that app is installed.
OPTIONAL_STEPS = {
    "automate_llm": "automate.steps.llm.LLMStep",
    "rag": "automate.steps.rag_query.RagQueryStep",
}

steps: Registry[type[StepExecutor]] = Registry(
    "step type", base=StepExecutor, validate=check_executor_shape
)


def register_step(cls: type[StepExecutor]) -> type[StepExecutor]:
    """Register a step type under ``cls.key`` (usable as a class decorator)."""
    return steps.register(cls)


def get_step(key: str) -> type[StepExecutor]:
    """The executor class for step type ``key``; raises :class:`NotRegistered`."""
    return steps.get(key)


def step_types() -> list[str]:
    return steps.keys()


def load() -> None:
    """Register the built-in step types; idempotent (called from ``ready()``)."""
    from django.apps import apps
    from django.utils.module_loading import import_string

    for path in BUILTIN_STEPS:
        steps.register(import_string(path), builtin=True)
    for app_label, path in OPTIONAL_STEPS.items():
        if apps.is_installed(app_label):
            steps.register(import_string(path), builtin=True)

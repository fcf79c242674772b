"""The registry of step types (``register_step`` / ``get_step``), filled in ``ready()``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.utils.module_loading import import_string

from automate.steps.base import StepExecutor, check_executor_shape
from automate_core.registry import NotRegistered, Registry, RegistryNotReady

__all__ = [
    "BUILTIN_STEPS",
    "NotRegistered",
    "RegistryNotReady",
    "StepRegistry",
    "get_step",
    "load",
    "register_step",
    "step_types",
]

#: Modules holding the built-in step types, registered by ``automate``'s ``ready()``.
BUILTIN_STEPS = (
    "automate.steps.connector_action.ConnectorActionStep",
    "automate.steps.http_request.HttpRequestStep",
    "automate.steps.filter.FilterStep",
    "automate.steps.mcp_tool.MCPToolStep",
    "automate.steps.send_webhook.SendWebhookStep",
    "automate.steps.control.BranchStep",
    "automate.steps.control.ForEachStep",
    "automate.steps.control.DelayStep",
    "automate.steps.control.WaitForEventStep",
    "automate.steps.control.ChildWorkflowStep",
)

#: Step types whose app is optional: registered only when that app is installed.
OPTIONAL_STEPS = {
    "automate_llm": "automate.steps.llm.LLMStep",
    "rag": "automate.steps.rag_query.RagQueryStep",
}


class StepRegistry(Registry[type[StepExecutor[Any]]]):
    """Built-ins include the step types of optional apps, when those apps are installed."""

    def __init__(self) -> None:
        super().__init__(
            "step type",
            base=StepExecutor,
            validate=check_executor_shape,
            app="automate",
            builtins=BUILTIN_STEPS,
        )

    def builtin_classes(self) -> Iterator[type[StepExecutor[Any]]]:
        yield from super().builtin_classes()
        for app_label, path in OPTIONAL_STEPS.items():
            if apps.is_installed(app_label):
                yield import_string(path)


steps = StepRegistry()


def register_step(cls: type[StepExecutor[Any]]) -> type[StepExecutor[Any]]:
    """Register a step type under ``cls.key`` (usable as a class decorator)."""
    return steps.register(cls)


def get_step(key: str) -> type[StepExecutor[Any]]:
    """The executor class for step type ``key``; raises :class:`NotRegistered`."""
    return steps.get(key)


def step_types() -> list[str]:
    return steps.keys()


def load() -> None:
    """Register the built-in step types; idempotent (called from ``ready()``)."""
    steps.load()

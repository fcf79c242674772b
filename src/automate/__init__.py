"""Django Automate: webhooks in, workflows out. Add the apps to ``INSTALLED_APPS`` and
mount :class:`WebhookView`.

The names most projects need are importable from the package::

    from automate import StepExecutor, WebhookView, WorkflowService, register_step

The longer paths (``automate.views``, ``automate.services``, ``automate.steps`` ...) keep
working.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from automate.steps import StepContext, StepExecutor, StepResult, register_step
from automate_core import __version__ as __version__

if TYPE_CHECKING:
    from automate.services import WorkflowService
    from automate.signals import event_accepted
    from automate.views import WebhookView

__all__ = [
    "StepContext",
    "StepExecutor",
    "StepResult",
    "WebhookView",
    "WorkflowService",
    "event_accepted",
    "register_step",
]

# Django imports this package while it loads the apps, before models may be imported; these
# names' modules import models (or the engine behind them), so they load on first access.
_LAZY = {
    "WebhookView": "automate.views",
    "WorkflowService": "automate.services",
    "event_accepted": "automate.signals",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

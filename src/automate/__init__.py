"""Django Automate: webhooks in, workflows out. Add the apps to ``INSTALLED_APPS`` and
mount :class:`WebhookView`.

The names most projects need are importable from the package::

    from automate import StepExecutor, WebhookView, WorkflowService, register_step, send_webhook

The longer paths (``automate.views``, ``automate.services``, ``automate.steps`` ...) keep
working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automate.steps import StepContext, StepExecutor, StepResult, register_step
from automate_core import __version__ as __version__
from automate_core.exports import lazy_exports

if TYPE_CHECKING:
    from automate.outgoing.api import send_webhook
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
    "send_webhook",
]

# Django imports this package while it loads the apps, before models may be imported; these
# names' modules import models (or the engine behind them), so they load on first access.
_LAZY = {
    "WebhookView": "automate.views",
    "WorkflowService": "automate.services",
    "event_accepted": "automate.signals",
    "send_webhook": "automate.outgoing.api",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)

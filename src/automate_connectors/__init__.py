"""The connector SDK: :class:`Connector`, its specs, the registry, reusable webhook
verifiers and the built-in connectors.

Everything a connector module needs is importable from the package::

    from automate_connectors import ActionSpec, CapabilitySpec, Connector, TriggerSpec
    from automate_connectors import register_connector

The longer paths (``automate_connectors.base``, ``automate_connectors.registry`` ...) keep
working. Nothing imported here touches settings or models.
"""

from __future__ import annotations

from automate_connectors.base import Connector
from automate_connectors.registry import get_connector, register_connector
from automate_connectors.specs import ActionSpec, CapabilitySpec, TriggerSpec
from automate_connectors.verdict import Reason, WebhookVerdict, refuse
from automate_connectors.verification import verify_hmac
from automate_connectors.webhooks import Headers, WebhookEvent
from automate_core import __version__ as __version__

__all__ = [
    "ActionSpec",
    "CapabilitySpec",
    "Connector",
    "Headers",
    "Reason",
    "TriggerSpec",
    "WebhookEvent",
    "WebhookVerdict",
    "get_connector",
    "refuse",
    "register_connector",
    "verify_hmac",
]

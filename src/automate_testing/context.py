"""A :class:`ProviderContext` for tests, whose secret resolver knows only test secrets.

Connectors under test must never read the developer's environment or database for a
``secret://NAME`` reference: :class:`FakeSecretBackend` holds the values a test gives it
and nothing else, so a reference the test did not provide fails as it would in production.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from automate_connectors.resolve import resolve_config, resolve_webhook_secret
from automate_core.providers.base import ProviderContext
from automate_core.secrets import SecretResolver

if TYPE_CHECKING:
    from automate_connectors.base import Connector

__all__ = ["FakeSecretBackend", "SettingsNotConfigured", "build_connector", "make_context"]

SETTINGS_HELP = (
    "Django settings are not configured. The testing kit builds and runs connectors the "
    "way production does, and that reads your settings (AUTOMATE: the HTTP client's "
    "address rules, the secret backends). Under pytest: pip install "
    "'django-automate[testing]' (it brings pytest-django) and add "
    "'DJANGO_SETTINGS_MODULE = yourproject.settings' to the [pytest] section of "
    "pytest.ini (or export DJANGO_SETTINGS_MODULE). Elsewhere call "
    "django.conf.settings.configure(...) first."
)

#: The trace id of every context built here, so tests can look for it in logs and rows.
TEST_TRACE_ID = "test-trace"


class FakeSecretBackend:
    """An in-memory secret backend: ``secret://NAME`` -> ``values[NAME]``."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, name: str) -> str | None:
        return self.values.get(name)


class SettingsNotConfigured(AssertionError):
    """The kit was used before Django settings were configured (fails the test plainly)."""


def require_settings() -> None:
    """Fail with :data:`SETTINGS_HELP` unless Django settings are (or can be) loaded.

    Without this a connector's first request fails inside the HTTP client, and its own
    ``normalize_error`` reports Django's ImproperlyConfigured as a connector error.
    """
    from django.conf import settings

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise SettingsNotConfigured(SETTINGS_HELP)


def build_connector(
    connector_class: type[Connector],
    config: Mapping[str, Any],
    *,
    ctx: ProviderContext,
    webhook_secrets: Iterable[str] = (),
) -> Connector:
    """Build a connector as a connection profile does, with ``ctx``'s secrets.

    Like :func:`automate.connections.build_connector`: every ``secret://NAME`` in the
    config is resolved before the connector sees it, and the webhook secrets are resolved
    and bound after construction (a subclass may skip ``super().__init__``).
    """
    connector = connector_class(resolve_config(dict(config), ctx.secrets), ctx=ctx)
    connector._automate_webhook_secrets = tuple(
        resolve_webhook_secret(value, ctx.secrets) for value in webhook_secrets
    )
    return connector


def make_context(
    secrets: Mapping[str, str] | None = None,
    *,
    trace_id: str = TEST_TRACE_ID,
    settings: Mapping[str, Any] | None = None,
) -> ProviderContext:
    """A context resolving only ``secrets`` (name -> value), never real backends."""
    require_settings()
    return ProviderContext(
        trace_id=trace_id,
        secrets=SecretResolver([FakeSecretBackend(secrets)]),
        settings=dict(settings or {}),
    )

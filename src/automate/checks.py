"""System checks for connectors and connection profiles (ids ``automate.E0xx``/``W0xx``)."""

from __future__ import annotations

from typing import Any

from django.core import checks

from automate_connectors.registry import connectors
from automate_core.conf import settings as automate_settings


@checks.register("automate")
def check_connector_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    for key, entry in sorted(automate_settings.CONNECTORS.items()):
        if not isinstance(entry, dict):
            messages.append(
                checks.Error(
                    f'AUTOMATE["CONNECTORS"][{key!r}] must be a dict.',
                    hint='e.g. {"secrets": ["secret://NAME"], "config": {...}}',
                    id="automate.E003",
                )
            )
            continue
        messages.extend(
            _check_connection(
                f'AUTOMATE["CONNECTORS"][{key!r}]',
                entry.get("connector", key),
                entry.get("secrets", ()),
                entry.get("enabled", True),
            )
        )
    return messages


@checks.register(checks.Tags.database, "automate")
def check_connection_profiles(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Run by ``manage.py check --database default``: profiles are rows, not settings."""
    if not databases:
        return []
    from django.db import connections

    from automate.models import ConnectionProfile

    # `migrate` runs database checks before it migrates: the table may not exist yet.
    with connections[databases[0]].cursor() as cursor:
        tables = connections[databases[0]].introspection.table_names(cursor)
    if ConnectionProfile._meta.db_table not in tables:
        return []
    messages: list[checks.CheckMessage] = []
    for profile in ConnectionProfile.objects.using(databases[0]).all():
        messages.extend(
            _check_connection(
                f"Connection profile {profile.key!r}",
                profile.connector_key,
                profile.webhook_secrets,
                profile.enabled,
                obj=profile,
            )
        )
    return messages


def _check_connection(
    label: str, connector_key: str, secrets: Any, enabled: bool, obj: Any = None
) -> list[checks.CheckMessage]:
    if connector_key not in connectors:
        return [
            checks.Error(
                f"{label} names the connector {connector_key!r}, which is not registered.",
                hint=f"Registered connectors: {', '.join(connectors.keys()) or 'none'}. "
                "Register yours with register_connector() in AppConfig.ready().",
                obj=obj,
                id="automate.E001",
            )
        ]
    cls = connectors.get(connector_key)
    verifies = any(t.verification_method != "none" for t in cls.triggers()) or (
        cls.verify_webhook is not _base_verify()
    )
    if enabled and verifies and not secrets:
        return [
            checks.Warning(
                f"{label} has no webhook secret, so every webhook it receives gets a 401.",
                hint='Add "secrets": ["secret://NAME"] (or a secret in the admin).',
                obj=obj,
                id="automate.W001",
            )
        ]
    return []


def _base_verify() -> Any:
    from automate_connectors.base import Connector

    return Connector.verify_webhook

from __future__ import annotations

from django.apps import AppConfig

from automate.conf import AutomateSettings


class AutomateConfig(AppConfig):
    name = "automate"
    label = "automate"
    verbose_name = "Automate"
    default_auto_field = "django.db.models.BigAutoField"
    # The AUTOMATE keys this app declares (automate_core.conf); the checks find them here.
    automate_settings = AutomateSettings

    def ready(self) -> None:
        """Wire the app: register checks and steps, connect the receivers. No I/O."""
        from django.core.signals import setting_changed
        from django.db.models.signals import post_delete, post_save

        # Imported here, not at the top: these modules import models, which need the app
        # registry, and apps.py is imported while the registry is being filled.
        from automate import (
            checks,  # noqa: F401  (registers the system checks)
            instrument,
            receivers,
            signals,
        )
        from automate.api import checks as api_checks  # noqa: F401  (registers its checks)
        from automate.connections import clear_connection_cache, signing_secret_references
        from automate.mcp import checks as mcp_checks  # noqa: F401  (registers the MCP checks)
        from automate.models import ConnectionProfile, Workflow
        from automate.outgoing import checks as outgoing_checks  # noqa: F401  (its checks)
        from automate.signing import is_profile_signing_secret
        from automate.steps import registry
        from automate_core.models import Secret
        from automate_core.secrets import register_signing_secrets

        registry.load()
        _register_sealed_fields()
        register_signing_secrets(signing_secret_references, probe=is_profile_signing_secret)
        for signal in (post_save, post_delete):
            signal.connect(
                clear_connection_cache, sender=ConnectionProfile, dispatch_uid="automate.profiles"
            )
            # Webhook secrets stored as Secret rows are kept resolved with the connections.
            signal.connect(clear_connection_cache, sender=Secret, dispatch_uid="automate.secrets")
        from automate.schedules.fire import follow_enabled, forget_next_due
        from automate.schedules.models import Schedule

        for signal in (post_save, post_delete):
            signal.connect(forget_next_due, sender=Schedule, dispatch_uid="automate.schedules")
        post_save.connect(
            follow_enabled, sender=Workflow, dispatch_uid="automate.schedules.follow_enabled"
        )
        setting_changed.connect(
            receivers.clear_connections_on_settings, dispatch_uid="automate.profiles_settings"
        )
        signals.event_accepted.connect(
            receivers.start_processing, dispatch_uid="automate.start_processing"
        )
        instrument.connect_celery()  # trace context through Celery messages


def _register_sealed_fields() -> None:
    """The credentials ``manage.py automate_rotate_secrets`` (a core command) re-encrypts."""
    # Here, like every import of this module: apps.py is imported while the app registry
    # fills, so it imports the project's modules only from ready().
    from automate_core.crypto.sealed_fields import Shape, register_sealed

    register_sealed(
        "automate.ConnectionProfile",
        "webhook_secrets",
        shape=Shape.SEALED_LIST,
        describe=lambda profile: f"connection profile {profile.key!r} secret",
    )
    register_sealed(
        "automate.MCPServer",
        "api_key",
        describe=lambda server: f"MCP server {server.key!r} API key",
    )
    register_sealed(
        "automate.EndpointSecret",
        "secret",
        describe=lambda row: f"webhook endpoint {row.endpoint_id} signing secret",
    )

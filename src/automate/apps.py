from __future__ import annotations

from django.apps import AppConfig


class AutomateConfig(AppConfig):
    name = "automate"
    label = "automate"
    verbose_name = "Automate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from automate import (
            checks,  # noqa: F401  (registers the system checks)
            signals,
        )
        from automate.steps import registry

        registry.load()
        signals.event_accepted.connect(
            signals.start_processing, dispatch_uid="automate.start_processing"
        )

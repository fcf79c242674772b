from __future__ import annotations

from django.apps import AppConfig


class AutomateConfig(AppConfig):
    name = "automate"
    label = "automate"
    verbose_name = "Automate"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from automate import checks  # noqa: F401  (registers the system checks)

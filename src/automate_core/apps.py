from __future__ import annotations

from django.apps import AppConfig


class AutomateCoreConfig(AppConfig):
    name = "automate_core"
    label = "automate_core"
    verbose_name = "Automate core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # ready() only wires: checks register here, nothing touches the database.
        from . import checks  # noqa: F401

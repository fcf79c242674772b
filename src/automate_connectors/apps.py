from __future__ import annotations

from django.apps import AppConfig


class AutomateConnectorsConfig(AppConfig):
    name = "automate_connectors"
    label = "automate_connectors"
    verbose_name = "Automate connectors"

    def ready(self) -> None:
        from automate_connectors.registry import connectors

        connectors.load()

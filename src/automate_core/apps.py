from __future__ import annotations

from django.apps import AppConfig

from automate_core.conf import CoreSettings
from automate_core.crypto.sealed_fields import Shape, register_sealed


class AutomateCoreConfig(AppConfig):
    name = "automate_core"
    label = "automate_core"
    verbose_name = "Automate core"
    default_auto_field = "django.db.models.BigAutoField"
    # The AUTOMATE keys this app declares (automate_core.conf); the checks find them here.
    automate_settings = CoreSettings

    def ready(self) -> None:
        # ready() only wires: checks register here, nothing touches the database.
        from . import checks  # noqa: F401

        # Key rotation re-encrypts what each app registers here (automate adds its own).
        register_sealed(
            "automate_core.Secret",
            "ciphertext",
            shape=Shape.TOKEN,
            describe=lambda row: f"secret {row.name!r}",
        )

from __future__ import annotations

from django.apps import AppConfig

from automate_llm.conf import LLMSettings


class AutomateLLMConfig(AppConfig):
    name = "automate_llm"
    label = "automate_llm"
    verbose_name = "Automate LLM"
    default_auto_field = "django.db.models.BigAutoField"
    # The AUTOMATE keys this app declares (automate_core.conf); the checks find them here.
    automate_settings = LLMSettings

    def ready(self) -> None:
        from automate_llm.registry import llm_providers

        llm_providers.load()

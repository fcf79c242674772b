from __future__ import annotations

from django.apps import AppConfig


class AutomateLLMConfig(AppConfig):
    name = "automate_llm"
    label = "automate_llm"
    verbose_name = "Automate LLM"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from automate_llm.registry import llm_providers

        llm_providers.load()

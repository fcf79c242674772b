from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self):
        # The spec's "Registration" lines (the snippet lives in llm_providers.py here).
        from automate_llm.registry import register_provider
        from .llm_providers import MyLLMProvider
        register_provider(MyLLMProvider)

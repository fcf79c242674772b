from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self):
        # The spec's "Registration" lines (the snippet lives in llm_providers.py here).
        from automate_llm.registry import register_provider
        from .llm_providers import MyLLMProvider
        register_provider(MyLLMProvider)

        # The spec's RAG providers, registered the same way (see rag_providers.py).
        from tests.testapp import rag_providers
        rag_providers.register()

        # A test connector whose action POSTs to a local counting server (engine tests).
        from automate_connectors.registry import register_connector
        from tests.testapp.engine_connectors import RecorderConnector
        register_connector(RecorderConnector)

        # A credential field of the project's own, re-encrypted by automate_rotate_secrets.
        from automate_core.crypto import register_sealed
        register_sealed(
            "testapp.Credential", "token", describe=lambda row: f"credential {row.name!r}"
        )

        # Crash tests pause a worker process mid-tick to kill it there (env-driven).
        from tests.testapp import crash_points
        crash_points.connect_from_environment()

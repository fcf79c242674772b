from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        from automate_connectors.registry import register_connector
        from tests.testapp.engine_connectors import RecorderConnector

        register_connector(RecorderConnector)

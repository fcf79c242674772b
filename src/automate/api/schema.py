"""The OpenAPI schema of the REST API, whatever the project's DRF settings say.

Our views carry drf-spectacular's ``AutoSchema`` themselves (see
:mod:`automate.api.inspectors`), and the schema view describes only our views: the
project's other views may use any schema class.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.settings import spectacular_settings
from drf_spectacular.views import SpectacularAPIView

from automate.api.inspectors import SpectacularSchema, extend_schema
from automate.api.views import APIMixin

__all__ = ["SchemaView", "SpectacularSchema", "extend_schema", "is_automate_view"]


def is_automate_view(callback: Any) -> bool:
    view_class = getattr(callback, "cls", None)
    return isinstance(view_class, type) and issubclass(view_class, APIMixin)


def _generator_class() -> type:
    """The project's generator class, enumerating only the REST API's views."""
    base = spectacular_settings.DEFAULT_GENERATOR_CLASS

    class OnlyAutomateViews(base.endpoint_inspector_cls):  # type: ignore[name-defined,misc]
        def should_include_endpoint(self, path: str, callback: Any) -> bool:
            return is_automate_view(callback) and super().should_include_endpoint(path, callback)

    return type("AutomateSchemaGenerator", (base,), {"endpoint_inspector_cls": OnlyAutomateViews})


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 document of the REST API (YAML, or JSON with ``?format=json``)."""

    generator_class = _generator_class()

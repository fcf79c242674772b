"""The OpenAPI schema of the REST API, whatever the project's DRF settings say.

Our views carry drf-spectacular's ``AutoSchema`` themselves (see
:mod:`automate.api.inspectors`), and the schema view describes only our views: the
project's other views may use any schema class.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.views import SpectacularAPIView
from rest_framework import permissions
from rest_framework.request import Request

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


class CanUseTheAPI(permissions.BasePermission):
    """The schema's default audience: logged-in users with any permission of the
    ``automate`` app, i.e. those the API answers with something else than 403."""

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_module_perms("automate"))


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 document of the REST API (YAML, or JSON with ``?format=json``).

    Served to the API's own users (:class:`CanUseTheAPI`) unless the project sets
    drf-spectacular's ``SERVE_PERMISSIONS`` itself, which then decides.
    """

    generator_class = _generator_class()

    def get_permissions(self) -> list[Any]:
        if "SERVE_PERMISSIONS" in getattr(settings, "SPECTACULAR_SETTINGS", {}):
            return [cls() for cls in spectacular_settings.SERVE_PERMISSIONS]
        return [CanUseTheAPI()]

"""The OpenAPI schema of the REST API, whatever the project's DRF settings say.

drf-spectacular only describes views whose ``schema`` is its own ``AutoSchema``; a project
with stock DRF settings gives every view DRF's schema class instead. So our views carry
drf-spectacular's ``AutoSchema`` themselves (see ``APIMixin``), their method annotations
are built on it (``extend_schema`` here), and the schema view describes only our views:
the project's other views may use any schema class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular import utils
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.settings import spectacular_settings
from drf_spectacular.views import SpectacularAPIView
from rest_framework.schemas.inspectors import ViewInspector


class SpectacularSchema(ViewInspector):
    """``schema`` of our views: DRF's DefaultSchema, but always drf-spectacular's AutoSchema.

    A descriptor, like DRF's: each view instance gets its own inspector (one shared
    instance would be re-pointed from view to view by concurrent schema requests).
    """

    def __get__(self, instance: Any, owner: Any) -> Any:
        result = super().__get__(instance, owner)
        if not isinstance(result, SpectacularSchema):
            return result  # set on this view instance by the schema generator
        inspector = AutoSchema()
        inspector.view = instance
        return inspector


F = TypeVar("F", bound=Callable[..., Any])


def extend_schema(**kwargs: Any) -> Callable[[F], F]:
    """drf-spectacular's ``extend_schema``, built on its ``AutoSchema`` on methods too.

    On a method (a viewset action, or one named in ``extend_schema_view``) drf-spectacular
    builds the annotation on DEFAULT_SCHEMA_CLASS unless the method names its own schema
    class; with stock DRF settings that is DRF's, which cannot describe the operation.
    """
    annotate = utils.extend_schema(**kwargs)

    def decorator(f: F) -> F:
        if not isinstance(f, type) and not hasattr(f, "schema"):
            f.schema = AutoSchema  # type: ignore[attr-defined]
        return annotate(f)

    return decorator


def is_automate_view(callback: Any) -> bool:
    from automate.api.views import APIMixin

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

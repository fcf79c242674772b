"""The schema inspector our views carry, whatever the project's DRF settings say.

drf-spectacular only describes views whose ``schema`` is its own ``AutoSchema``; a project
with stock DRF settings gives every view DRF's schema class instead. So our views carry
drf-spectacular's ``AutoSchema`` themselves (see ``APIMixin``), and their method
annotations are built on it (``extend_schema`` here). Below both the views and
:mod:`automate.api.schema`, which describes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from drf_spectacular import utils
from drf_spectacular.openapi import AutoSchema
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

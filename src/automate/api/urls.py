"""``path("api/", include("automate.api.urls"))`` mounts the API and its OpenAPI schema."""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from automate.api.schema import SchemaView
from automate.api.views import EventView, RunViewSet, WorkflowViewSet

app_name = "automate_api"

router = SimpleRouter()
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("runs", RunViewSet, basename="run")

urlpatterns = [
    path("events/", EventView.as_view(), name="events"),
    path("schema/", SchemaView.as_view(), name="schema"),
    path("", include(router.urls)),
]

"""The REST API mounted under a prefix and an instance namespace of the project's choice."""

from django.urls import include, path

urlpatterns = [path("v1/automate/", include("automate.api.urls", namespace="v1"))]

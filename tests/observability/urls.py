"""The test URLs plus /health/ and /metrics, mounted as docs/observability.md shows."""

from django.urls import path

from automate.health import HealthView
from automate.metrics import metrics_view
from tests.urls import urlpatterns as base

urlpatterns = [
    *base,
    path("health/", HealthView.as_view()),
    path("metrics", metrics_view),
]

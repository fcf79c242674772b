"""The example project's URLs plus the baseline: a bare view doing the same HMAC check
and one INSERT, with none of the project's machinery."""

from __future__ import annotations

from django.urls import path
from example_project.urls import urlpatterns as example_urls

from benchmarks.bench_app.views import bare_webhook

urlpatterns = [*example_urls, path("bare/github/", bare_webhook)]

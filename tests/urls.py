from django.contrib import admin
from django.urls import include, path

from automate.views import WebhookView

urlpatterns = [
    path("admin/", admin.site.urls),
    # Exactly the spec's line.
    path("webhooks/<str:connector_key>/", WebhookView.as_view()),
    path("rag/", include("rag.urls")),
    path("api/", include("automate.api.urls")),
]

from django.contrib import admin
from django.urls import include, path

from automate.views import WebhookView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("webhooks/<str:connector_key>/", WebhookView.as_view()),
    path("api/", include("automate.api.urls")),
    path("rag/", include("rag.urls")),
]

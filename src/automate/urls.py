"""Include these to mount the webhook endpoint: ``path("", include("automate.urls"))``."""

from django.urls import path

from automate.views import WebhookView

app_name = "automate"

urlpatterns = [
    path("webhooks/<str:connector_key>/", WebhookView.as_view(), name="webhook"),
]

"""Include with ``path("rag/", include("rag.urls"))``."""

from __future__ import annotations

from django.urls import path

from rag.api import KnowledgeBaseQueryView

app_name = "rag"

urlpatterns = [
    path(
        "knowledge-bases/<slug:slug>/query/",
        KnowledgeBaseQueryView.as_view(),
        name="knowledge-base-query",
    ),
]

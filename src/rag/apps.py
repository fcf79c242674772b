"""The RAG app: knowledge bases, retrieval providers and embedding providers."""

from __future__ import annotations

from django.apps import AppConfig


class RagConfig(AppConfig):
    name = "rag"
    label = "rag"
    verbose_name = "RAG"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Only wiring: the built-in modules import their SDKs lazily, so an extra that is
        # not installed costs nothing until a knowledge base uses that provider.
        from rag.registry import register_builtins

        register_builtins()

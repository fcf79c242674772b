"""The pgvector store's table, an app of its own so that ``rag`` needs no PostgreSQL driver.

Add ``"rag.contrib.pgvector"`` to ``INSTALLED_APPS`` to use the ``pgvector`` retrieval
provider. Its migration creates the ``vector`` extension (a no-op on other databases).
"""

from __future__ import annotations

from django.apps import AppConfig


class PgVectorStoreConfig(AppConfig):
    name = "rag.contrib.pgvector"
    label = "rag_pgvector"
    verbose_name = "RAG pgvector store"
    default_auto_field = "django.db.models.BigAutoField"

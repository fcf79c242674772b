"""Integration tests reuse the RAG fixtures (knowledge bases over the hashing embedder)."""

from tests.rag.conftest import corpus, make_kb  # noqa: F401

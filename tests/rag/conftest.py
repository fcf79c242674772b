"""Fixtures for the RAG tests: knowledge bases over the deterministic hashing embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "corpus"


@pytest.fixture
def make_kb(db):
    from rag.models import KnowledgeBase

    def make(slug: str = "help", **fields) -> KnowledgeBase:
        fields.setdefault("embedding_provider", "test_hashing")
        fields.setdefault("retrieval_provider", "local")
        fields.setdefault("chunk_size", 400)
        fields.setdefault("chunk_overlap", 40)
        kb = KnowledgeBase(name=slug.title(), slug=slug, **fields)
        kb.full_clean()
        kb.save()
        return kb

    return make


@pytest.fixture
def corpus() -> Path:
    return CORPUS

"""The RAG fixtures, for the in-memory retriever's knowledge-base test."""

from tests.rag.conftest import corpus, make_kb  # noqa: F401

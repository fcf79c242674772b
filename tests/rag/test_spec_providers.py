"""The spec's PineconeProvider and CohereEmbeddingProvider as a client project writes them.

They live unchanged in tests/testapp/rag_providers.py and are registered from the test
app's ``ready()``. Their SDK modules are replaced by fakes that behave like the services.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from automate_core.registry import AlreadyRegistered, Registry
from rag.embeddings.base import BaseEmbeddingProvider
from rag.ingest import ingest_text
from rag.providers.base import BaseRetrievalProvider
from rag.query import search
from rag.registry import (
    embedding_providers,
    get_embedding_provider,
    get_retrieval_provider,
    retrieval_providers,
)
from tests.testapp import rag_providers
from tests.testapp.rag_fakes import hashing_vector


class FakePineconeIndex:
    """Stores upserts and answers queries by dot product, as the service would."""

    def __init__(self) -> None:
        self.vectors: dict[str, dict] = {}
        self.queries: list[dict] = []

    def upsert(self, vectors):
        for vector in vectors:
            self.vectors[vector["id"]] = vector

    def query(self, vector, top_k, filter, include_metadata):
        self.queries.append({"top_k": top_k, "filter": filter, "include": include_metadata})
        scored = [
            (sum(a * b for a, b in zip(vector, v["values"], strict=True)), v)
            for v in self.vectors.values()
            if all(v["metadata"].get(k) == want for k, want in (filter or {}).items())
        ]
        scored.sort(key=lambda pair: -pair[0])
        return SimpleNamespace(
            matches=[
                SimpleNamespace(id=v["id"], score=score, metadata=v["metadata"])
                for score, v in scored[:top_k]
            ]
        )


@pytest.fixture
def fakes(monkeypatch):
    index = FakePineconeIndex()
    opened: list[tuple] = []
    keys: list[str] = []

    def open_index(name, api_key):
        opened.append((name, api_key))
        return index

    class FakeCohereClient:
        def __init__(self, api_key):
            keys.append(api_key)

        def embed(self, texts, model):
            assert model == "embed-english-v3.0"
            return SimpleNamespace(embeddings=[hashing_vector(t, 1024) for t in texts])

    monkeypatch.setattr(rag_providers, "pinecone", SimpleNamespace(Index=open_index))
    monkeypatch.setattr(rag_providers, "cohere", SimpleNamespace(Client=FakeCohereClient))
    return SimpleNamespace(index=index, opened=opened, keys=keys)


def test_spec_providers__registered_from_ready_replace_the_builtins():
    assert get_retrieval_provider("pinecone") is rag_providers.PineconeProvider
    assert get_embedding_provider("cohere") is rag_providers.CohereEmbeddingProvider
    assert not retrieval_providers.is_builtin("pinecone")
    assert not embedding_providers.is_builtin("cohere")


def test_spec_providers__a_knowledge_base_runs_on_them(make_kb, fakes, settings):
    settings.AUTOMATE = {**settings.AUTOMATE, "SECRETS": {"cohere": "co-key"}}
    kb = make_kb(
        embedding_provider="cohere",
        embedding_config={"api_key": "secret://cohere"},
        retrieval_provider="pinecone",
        retrieval_config={"index_name": "help-center", "api_key": "pc-key"},
    )
    ingest_text(kb, "pw.md", "# Passwords\n\nReset your password from the sign-in page.")
    ingest_text(kb, "bill.md", "# Billing\n\nInvoices are sent on the first of the month.")
    assert fakes.keys[0] == "co-key"  # self.api_key, resolved from the secret reference
    assert fakes.opened[0] == ("help-center", "pc-key")
    assert len(fakes.index.vectors) == 2

    results = search(kb, "reset password", top_k=2, filters={"source": "pw.md"})
    assert [r["source"] for r in results] == ["pw.md"]
    assert "Reset your password" in results[0]["content"]
    assert fakes.index.queries[-1] == {"top_k": 2, "filter": {"source": "pw.md"}, "include": True}


def test_spec_providers__a_store_without_delete_reports_stale_passages(make_kb, fakes):
    kb = make_kb(
        retrieval_provider="pinecone", retrieval_config={"index_name": "i", "api_key": "k"}
    )
    ingest_text(kb, "a.md", "Long text. " * 120)
    result = ingest_text(kb, "a.md", "Short now.")
    assert result.status == "updated"
    assert result.stale_ids  # the spec's class cannot delete; nothing is silently lost
    assert all(stale in fakes.index.vectors for stale in result.stale_ids)


def test_registry__a_second_project_class_under_a_key_is_an_error():
    registry = Registry("retrieval provider", base=BaseRetrievalProvider)
    registry.register(rag_providers.PineconeProvider)

    class Other(BaseRetrievalProvider):
        key = "pinecone"

        def retrieve(self, query_embedding, top_k=5, filters=None):
            return []

        def index_documents(self, documents):
            return 0

    with pytest.raises(AlreadyRegistered, match="key 'pinecone' is taken"):
        registry.register(Other)


def test_registry__embedding_providers_need_positive_dimensions():
    class NoSize(BaseEmbeddingProvider):
        key = "no_size"

        def embed(self, texts):
            return []

    with pytest.raises(TypeError, match="dimensions must be a positive int"):
        embedding_providers.register(NoSize)
    assert "no_size" not in embedding_providers


def test_registry__only_subclasses_of_the_bases_register():
    class NotAProvider:
        key = "nope"

    with pytest.raises(TypeError, match="must subclass"):
        retrieval_providers.register(NotAProvider)


def test_base__delete_is_refused_by_default_with_a_clear_error(fakes):
    provider = rag_providers.PineconeProvider({"index_name": "i", "api_key": "k"})
    from automate_core.providers.errors import AutomateError

    with pytest.raises(AutomateError, match="does not support deleting"):
        provider.delete(["a"])


def test_registry__lookups_before_ready_say_how_to_fix_it(monkeypatch):
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setattr(apps, "ready", False)
    with pytest.raises(ImproperlyConfigured, match=r"registered in AppConfig.ready\(\)"):
        get_retrieval_provider("local")

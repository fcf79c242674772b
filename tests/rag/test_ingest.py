from __future__ import annotations

import itertools

import pytest

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag.ingest import delete_document, ingest_paths, ingest_text
from rag.models import Chunk, Document, LocalVector
from rag.query import search
from tests.testapp.rag_fakes import HashingEmbeddingProvider


@pytest.fixture(autouse=True)
def _reset_calls():
    HashingEmbeddingProvider.calls.clear()


def test_ingest_text__creates_document_chunks_and_vectors(make_kb):
    kb = make_kb()
    result = ingest_text(kb, "notes.md", "# Notes\n\n" + "Some words here. " * 60)
    assert result.status == "created"
    assert result.chunks > 1
    document = Document.objects.get(knowledge_base=kb, source="notes.md")
    assert document.title == "Notes"
    chunks = list(document.chunks.all())
    assert [c.ordinal for c in chunks] == list(range(result.chunks))
    assert all(len(c.content) <= kb.chunk_size for c in chunks)
    vectors = LocalVector.objects.filter(namespace=kb.slug)
    assert sorted(vectors.values_list("vector_id", flat=True)) == sorted(
        c.vector_id for c in chunks
    )
    assert chunks[0].metadata["source"] == "notes.md"


def test_ingest_text__same_content_is_skipped_without_embedding(make_kb):
    kb = make_kb()
    ingest_text(kb, "a.md", "Alpha beta gamma.")
    calls = len(HashingEmbeddingProvider.calls)
    result = ingest_text(kb, "a.md", "Alpha beta gamma.")
    assert result.status == "unchanged"
    assert len(HashingEmbeddingProvider.calls) == calls
    assert ingest_text(kb, "a.md", "Alpha beta gamma.", force=True).status == "updated"


def test_ingest_text__changed_content_replaces_chunks_and_drops_stale_vectors(make_kb):
    kb = make_kb()
    ingest_text(kb, "a.md", "Long text. " * 150)
    assert LocalVector.objects.filter(namespace=kb.slug).count() > 2
    result = ingest_text(kb, "a.md", "Now short.")
    assert result.status == "updated"
    assert result.chunks == 1
    assert LocalVector.objects.filter(namespace=kb.slug).count() == 1
    assert Chunk.objects.filter(knowledge_base=kb).get().content == "Now short."


def test_ingest_text__a_failing_store_leaves_the_previous_version(make_kb, monkeypatch):
    kb = make_kb()
    ingest_text(kb, "a.md", "First version.")

    def broken(self, documents):
        raise AutomateError(ErrorCodes.UNAVAILABLE, "store down")

    monkeypatch.setattr("rag.providers.local.LocalRetrievalProvider.index_documents", broken)
    with pytest.raises(AutomateError, match="store down"):
        ingest_text(kb, "a.md", "Second version.")
    document = Document.objects.get(source="a.md")
    assert document.content == "First version."
    assert document.chunks.get().content == "First version."


@pytest.mark.parametrize(
    ("source", "text", "fragment"),
    [("", "text", "source must be"), ("a.md", "   ", "the document is empty")],
)
def test_ingest_text__rejects_bad_input(make_kb, source, text, fragment):
    kb = make_kb()
    with pytest.raises(AutomateError, match=fragment):
        ingest_text(kb, source, text)
    assert not Document.objects.exists()


def test_ingest_paths__reads_markdown_and_text_recursively(make_kb, corpus):
    kb = make_kb()
    seen = []
    results = ingest_paths(kb, [corpus], progress=lambda done, total, path: seen.append(done))
    assert {r.status for r in results} == {"created"}
    assert seen == list(range(1, len(results) + 1))
    assert Document.objects.filter(knowledge_base=kb).count() == 4
    assert {d.title for d in Document.objects.all()} >= {"Your account", "Billing", "security"}


def test_ingest_paths__refuses_unknown_files_before_ingesting(make_kb, tmp_path):
    kb = make_kb()
    (tmp_path / "a.md").write_text("Alpha.")
    (tmp_path / "b.pdf").write_bytes(b"%PDF")
    with pytest.raises(AutomateError, match=r"only \.markdown, \.md, \.txt"):
        ingest_paths(kb, [tmp_path / "a.md", tmp_path / "b.pdf"])
    with pytest.raises(AutomateError, match="no such file"):
        ingest_paths(kb, [tmp_path / "missing.md"])
    assert not Document.objects.exists()


def test_ingest_paths__non_utf8_is_a_clear_error(make_kb, tmp_path):
    kb = make_kb()
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(AutomateError, match="not UTF-8"):
        ingest_paths(kb, [tmp_path])


def test_delete_document__removes_rows_and_vectors(make_kb):
    kb = make_kb()
    ingest_text(kb, "a.md", "Alpha.")
    ingest_text(kb, "b.md", "Beta.")
    delete_document(Document.objects.get(source="a.md"))
    assert list(LocalVector.objects.values_list("content", flat=True)) == ["Beta."]


def test_search__finds_the_passage_sharing_the_query_words(make_kb, corpus):
    kb = make_kb()
    ingest_paths(kb, [corpus])
    results = search(kb, "how do I return an item parcel refund", top_k=3)
    assert len(results) == 3
    assert results[0]["source"].endswith("shipping.md")
    assert "return" in results[0]["content"].lower()
    assert results[0]["score"] >= results[1]["score"] >= results[2]["score"]
    filtered = search(
        "help", "invoices", top_k=2, filters={"source": {"$ne": results[0]["source"]}}
    )
    assert all(r["source"] != results[0]["source"] for r in filtered)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("", 5), "query must be a non-empty string"),
        (("q", 0), "top_k must be an integer"),
        (("q", 51), "top_k must be an integer"),
        (("x" * 2001, 5), "longer than 2000"),
    ],
)
def test_search__rejects_bad_input(make_kb, args, fragment):
    kb = make_kb()
    with pytest.raises(AutomateError, match=fragment):
        search(kb, *args)


def test_search__unknown_knowledge_base_is_not_found(db):
    with pytest.raises(AutomateError) as info:
        search("nope", "query")
    assert info.value.code == ErrorCodes.NOT_FOUND


def test_knowledge_base__clean_names_every_bad_field(db):
    from django.core.exceptions import ValidationError

    from rag.models import KnowledgeBase

    kb = KnowledgeBase(
        name="X",
        slug="x",
        embedding_provider="nope",
        retrieval_provider="nada",
        chunk_size=100,
        chunk_overlap=100,
    )
    with pytest.raises(ValidationError) as info:
        kb.full_clean()
    assert set(info.value.message_dict) == {
        "embedding_provider",
        "retrieval_provider",
        "chunk_overlap",
    }
    assert "known: cohere, local, openai" in info.value.message_dict["embedding_provider"][0]


# -- many documents at once: length-sorted batches, embedding pipelined with writes ------


def test_length_batches__groups_similar_lengths_shortest_first():
    from rag.ingest import length_batches

    assert length_batches([5, 1, 9, 1, 7], 2) == [[1, 3], [0, 4], [2]]
    assert length_batches([], 4) == []


def test_embed_passages__sorts_by_length_and_returns_vectors_in_order(make_kb):
    from rag.ingest import embed_passages
    from tests.testapp.rag_fakes import hashing_vector

    kb = make_kb()
    texts = [("word " * (i % 17 + 1)) + f"n{i}" for i in range(150)]
    vectors = embed_passages(kb.get_embedder(), texts, kb)
    assert vectors == [hashing_vector(t, 64) for t in texts]
    calls = HashingEmbeddingProvider.calls
    assert [len(c) for c in calls] == [64, 64, 22]
    lengths = [[len(t) for t in call] for call in calls]
    assert all(batch == sorted(batch) for batch in lengths)
    assert all(a[-1] <= b[0] for a, b in itertools.pairwise(lengths))


def test_embed_passages__a_wrong_vector_count_is_an_error(make_kb, monkeypatch):
    from rag.ingest import embed_passages

    kb = make_kb()
    monkeypatch.setattr(HashingEmbeddingProvider, "embed", lambda self, texts: [[1.0] * 64])
    with pytest.raises(AutomateError, match="wrong count or size") as caught:
        embed_passages(kb.get_embedder(), ["a", "b"], kb)
    assert caught.value.code == ErrorCodes.INTERNAL


def _docs(count: int, start: int = 0):
    from rag.ingest import SourceText

    return [
        SourceText(f"doc{i}.md", f"# Doc {i}\n\n" + f"Sentence {i} about topic {i % 3}. " * (i + 3))
        for i in range(start, start + count)
    ]


def test_ingest_documents__stores_what_ingest_text_stores(make_kb):
    from rag.ingest import ingest_documents

    one_by_one, batched = make_kb("one"), make_kb("many")
    for doc in _docs(6):
        ingest_text(one_by_one, doc.source, doc.text)
    steps = []
    results = ingest_documents(batched, _docs(6), progress=steps.append, batch_passages=3)
    assert [r.source for r in results] == [f"doc{i}.md" for i in range(6)]
    assert {r.status for r in results} == {"created"}

    def stored(kb):
        chunks = Chunk.objects.filter(knowledge_base=kb).order_by("vector_id")
        vectors = LocalVector.objects.filter(namespace=kb.slug).order_by("vector_id")
        return (
            [(c.vector_id, c.ordinal, c.content, c.metadata) for c in chunks],
            [(v.vector_id, v.content, v.embedding) for v in vectors],
        )

    assert stored(batched) == stored(one_by_one)
    total = sum(r.chunks for r in results)
    assert [s.documents_done for s in steps] == list(range(1, 7))
    assert all(s.documents_total == 6 for s in steps)
    passages = [s.passages_done for s in steps]
    assert passages == sorted(passages) and passages[-1] == total
    assert steps[-1].rate > 0


def test_ingest_documents__skips_unchanged_replaces_changed_drops_stale(make_kb):
    from rag.ingest import SourceText, ingest_documents

    kb = make_kb()
    ingest_documents(kb, _docs(3))
    HashingEmbeddingProvider.calls.clear()
    docs = _docs(3)
    docs[1] = SourceText("doc1.md", "Now short.")
    results = ingest_documents(kb, [*docs, *_docs(1, start=3)])
    assert [r.status for r in results] == ["unchanged", "updated", "unchanged", "created"]
    embedded = [t for call in HashingEmbeddingProvider.calls for t in call]
    assert "Now short." in embedded
    assert not any("Sentence 0 " in t for t in embedded)
    document = Document.objects.get(knowledge_base=kb, source="doc1.md")
    assert [c.content for c in document.chunks.all()] == ["Now short."]
    ids = set(LocalVector.objects.filter(namespace=kb.slug).values_list("vector_id", flat=True))
    assert ids == set(Chunk.objects.filter(knowledge_base=kb).values_list("vector_id", flat=True))


def test_ingest_documents__embeds_the_next_wave_while_writing_the_one_before(make_kb, monkeypatch):
    import threading

    from rag.ingest import ingest_documents
    from rag.providers.local import LocalRetrievalProvider

    kb = make_kb()
    events: list[tuple[str, str, str]] = []
    second_wave_embedding = threading.Event()
    embed, index = HashingEmbeddingProvider.embed, LocalRetrievalProvider.index_documents

    def embed_spy(self, texts):
        if any("Sentence 1 " in t for t in texts):
            second_wave_embedding.set()
        events.append(("embed", threading.current_thread().name, texts[0][:6]))
        return embed(self, texts)

    def index_spy(self, documents):
        events.append(("write", threading.current_thread().name, documents[0]["id"]))
        if len([e for e in events if e[0] == "write"]) == 1:
            # Without the pipeline, the second wave would be embedded only after this.
            assert second_wave_embedding.wait(timeout=30)
        return index(self, documents)

    monkeypatch.setattr(HashingEmbeddingProvider, "embed", embed_spy)
    monkeypatch.setattr(LocalRetrievalProvider, "index_documents", index_spy)
    results = ingest_documents(kb, _docs(2), batch_passages=1)
    assert [r.status for r in results] == ["created", "created"]
    assert {name for kind, name, _ in events if kind == "embed"} == {"rag-embed_0"}
    assert {name for kind, name, _ in events if kind == "write"} == {
        threading.current_thread().name
    }


def test_ingest_documents__reuses_one_embedding_thread_per_process(make_kb, monkeypatch):
    import threading

    from rag.ingest import embed_pool, ingest_documents

    threads: list[int] = []
    embed = HashingEmbeddingProvider.embed

    def embed_spy(self, texts):
        threads.append(threading.get_ident())
        return embed(self, texts)

    monkeypatch.setattr(HashingEmbeddingProvider, "embed", embed_spy)
    ingest_documents(make_kb("first"), _docs(2), batch_passages=1)
    ingest_documents(make_kb("second"), _docs(2), batch_passages=1)
    assert len(threads) >= 4
    assert len(set(threads)) == 1
    assert threads[0] != threading.get_ident()
    assert embed_pool().submit(threading.get_ident).result(timeout=30) == threads[0]


@pytest.mark.parametrize("threads", [1, 2])
def test_embed_pool__a_forked_child_starts_its_own_threads(threads):
    import os
    import threading

    from rag.ingest import embed_pool

    parent = embed_pool(threads)
    parent_thread = parent.submit(threading.get_ident).result(timeout=30)
    pid = os.fork()
    if pid == 0:  # the child: no pytest reporting here, only an exit code
        code = 1
        try:
            child = embed_pool(threads)
            ran = child.submit(threading.get_ident).result(timeout=30)
            code = 0 if child is not parent and child is embed_pool(threads) and ran else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert embed_pool(threads) is parent
    if threads == 1:
        assert parent.submit(threading.get_ident).result(timeout=30) == parent_thread


def _crash_embedding_at(sentence: str, monkeypatch) -> None:
    """The hashing embedder fails (UNAVAILABLE) on a batch holding ``sentence``."""
    embed = HashingEmbeddingProvider.embed

    def flaky(self, texts):
        if any(sentence in t for t in texts):
            raise AutomateError(ErrorCodes.UNAVAILABLE, "model crashed")
        return embed(self, texts)

    monkeypatch.setattr(HashingEmbeddingProvider, "embed", flaky)


def test_ingest_documents__a_failing_embedder_keeps_the_waves_written_before(make_kb, monkeypatch):
    from rag.ingest import ingest_documents

    kb = make_kb()
    _crash_embedding_at("Sentence 2 ", monkeypatch)
    with pytest.raises(AutomateError, match="model crashed"):
        ingest_documents(kb, _docs(4), batch_passages=1)
    sources = set(Document.objects.filter(knowledge_base=kb).values_list("source", flat=True))
    assert sources == {"doc0.md", "doc1.md"}
    ids = set(LocalVector.objects.filter(namespace=kb.slug).values_list("vector_id", flat=True))
    assert ids == set(Chunk.objects.filter(knowledge_base=kb).values_list("vector_id", flat=True))


def test_ingest_documents__a_failing_store_leaves_that_wave_unwritten(make_kb, monkeypatch):
    from rag.ingest import ingest_documents
    from rag.providers.local import LocalRetrievalProvider

    kb = make_kb()
    index = LocalRetrievalProvider.index_documents

    def broken_second(self, documents):
        if any(d["id"].startswith(_prefix("doc1.md")) for d in documents):
            raise AutomateError(ErrorCodes.UNAVAILABLE, "store down")
        return index(self, documents)

    monkeypatch.setattr(LocalRetrievalProvider, "index_documents", broken_second)
    with pytest.raises(AutomateError, match="store down"):
        ingest_documents(kb, _docs(3), batch_passages=1)
    assert list(Document.objects.filter(knowledge_base=kb).values_list("source", flat=True)) == [
        "doc0.md"
    ]


def _prefix(source: str) -> str:
    import hashlib

    return hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:16]


def test_ingest_documents__refuses_a_source_given_twice(make_kb):
    from rag.ingest import ingest_documents

    kb = make_kb()
    with pytest.raises(AutomateError, match="the same source is given twice"):
        ingest_documents(kb, [*_docs(2), *_docs(1)])
    assert not Document.objects.exists()
    assert HashingEmbeddingProvider.calls == []


def test_ingest_paths__reports_passages_and_rate(make_kb, corpus):
    kb = make_kb()
    steps = []
    results = ingest_paths(kb, [corpus], on_progress=steps.append)
    assert steps[-1].documents_done == steps[-1].documents_total == len(results)
    assert steps[-1].passages_done == sum(r.chunks for r in results)


# -- several embedding threads ----------------------------------------------------------


@pytest.fixture
def three_threads(monkeypatch):
    """The hashing provider as a provider that embeds three batches at once, two texts per
    batch, recording where each batch ran and the order batches started in."""
    import threading

    monkeypatch.setattr(HashingEmbeddingProvider, "embedding_threads", lambda self: 3)
    monkeypatch.setattr(HashingEmbeddingProvider, "batch_size", 2, raising=False)
    prepared: list[int] = []
    ran: list[tuple[int, list[str]]] = []
    embed = HashingEmbeddingProvider.embed

    def prepare(self):
        prepared.append(threading.get_ident())

    def embed_spy(self, texts):
        ran.append((threading.get_ident(), list(texts)))
        return embed(self, texts)

    monkeypatch.setattr(HashingEmbeddingProvider, "prepare_embedding_thread", prepare)
    monkeypatch.setattr(HashingEmbeddingProvider, "embed", embed_spy)
    return prepared, ran


def test_ingest_documents__several_threads_embed_the_batches_and_store_them_in_place(
    make_kb, three_threads, monkeypatch
):
    import threading

    from rag.ingest import ingest_documents, length_batches

    prepared, ran = three_threads
    one_by_one, parallel = make_kb("one"), make_kb("many")
    for doc in _docs(8):
        ingest_text(one_by_one, doc.source, doc.text)
    ran.clear()
    # The first three batches wait for each other: the call ends only if they ran at once.
    three_at_once = threading.Barrier(3, timeout=30)
    started = itertools.count()
    embed = HashingEmbeddingProvider.embed

    def meet(self, texts):
        if next(started) < 3:
            three_at_once.wait()
        return embed(self, texts)

    monkeypatch.setattr(HashingEmbeddingProvider, "embed", meet)
    results = ingest_documents(parallel, _docs(8), batch_passages=100)

    assert [r.status for r in results] == ["created"] * 8
    assert _stored(parallel) == _stored(one_by_one)  # each vector back at its passage
    texts = [
        c.content
        for c in Chunk.objects.filter(knowledge_base=parallel).order_by("document", "ordinal")
    ]
    expected = [[texts[i] for i in batch] for batch in length_batches(list(map(len, texts)), 2)]
    assert len(expected) >= 4
    assert sorted(batch for _, batch in ran) == sorted(expected)
    threads = {ident for ident, _ in ran}
    assert len(threads) == 3 and threading.get_ident() not in threads
    assert sorted(prepared) == sorted(ident for ident, _ in ran)  # before every batch


@pytest.mark.parametrize(("asked", "most"), [(1, 1), (2, 2), (8, 3)])
def test_ingest_documents__threads_caps_the_providers_embedding_threads(
    make_kb, three_threads, asked, most
):
    from rag.ingest import embed_pool, ingest_documents

    _, ran = three_threads
    ingest_documents(make_kb(), _docs(12), threads=asked)
    pool = embed_pool(most)
    used = {ident for ident, _ in ran}
    assert 1 <= len(used) <= most
    # They are the threads of the pool of that size (an idle pool starts no thread).
    assert used <= {thread.ident for thread in pool._threads}


@pytest.mark.parametrize("threads", [0, -2, 1.5, "2"])
def test_ingest_documents__threads_must_be_a_positive_integer(make_kb, threads):
    from rag.ingest import ingest_documents

    with pytest.raises(AutomateError, match="threads must be a positive integer") as caught:
        ingest_documents(make_kb(), _docs(2), threads=threads)
    assert caught.value.code == ErrorCodes.INVALID_ARGUMENT
    assert HashingEmbeddingProvider.calls == []
    assert not Document.objects.exists()


def test_ingest_documents__a_failing_batch_among_threads_stops_after_the_waves_before(
    make_kb, three_threads, monkeypatch
):
    from rag.ingest import ingest_documents

    _, ran = three_threads
    kb = make_kb()
    _crash_embedding_at("Sentence 5 ", monkeypatch)
    with pytest.raises(AutomateError, match="model crashed"):
        ingest_documents(kb, _docs(12), batch_passages=2)
    sources = set(Document.objects.filter(knowledge_base=kb).values_list("source", flat=True))
    assert sources == {"doc0.md", "doc1.md", "doc2.md", "doc3.md"}
    ids = set(LocalVector.objects.filter(namespace=kb.slug).values_list("vector_id", flat=True))
    assert ids == set(Chunk.objects.filter(knowledge_base=kb).values_list("vector_id", flat=True))
    # Nothing past the failing wave and the one queued behind it was embedded.
    assert not any("Sentence 8 " in t for _, batch in ran for t in batch)


def _stored(kb):
    chunks = Chunk.objects.filter(knowledge_base=kb).order_by("vector_id")
    vectors = LocalVector.objects.filter(namespace=kb.slug).order_by("vector_id")
    return (
        [(c.vector_id, c.ordinal, c.content, c.metadata) for c in chunks],
        [(v.vector_id, v.content, v.embedding) for v in vectors],
    )

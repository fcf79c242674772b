from __future__ import annotations

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

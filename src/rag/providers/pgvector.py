"""The ``pgvector`` store: passages in PostgreSQL, searched through an HNSW index.

Needs ``"rag.contrib.pgvector"`` in ``INSTALLED_APPS`` (its table) and the ``postgres``
extra (psycopg + pgvector). One table serves every knowledge base: the vector column has
no fixed size, and each namespace gets its own partial HNSW index over
``embedding::vector(N)`` with cosine ops, built after its first load (building once over
loaded rows is much faster than growing the graph row by row). Every query sets
``hnsw.ef_search`` and ``hnsw.iterative_scan`` for its own transaction only, so a filtered
query keeps scanning the graph until it has ``top_k`` matches instead of returning fewer.

Config: ``namespace``; ``m`` (16) and ``ef_construction`` (64) for the index;
``ef_search`` (100) and ``iterative_scan`` ("relaxed_order", or "strict_order", "off") per
query; ``filter_candidates`` (0: off): with a filter, ask the index for at least this many
matching rows and keep the best ``top_k`` (a relaxed-order scan stops at the first rows that
pass the filter, so a larger pool raises recall, at the price of scanning further);
``hybrid`` (False) to fuse PostgreSQL full-text ranks with vector ranks by reciprocal rank
fusion, with ``text_search_config`` ("english"), ``rrf_k`` (60) and ``hybrid_candidates``
(50 per side); ``exact_threshold`` (1000; 0: off): a filter with an equality that keeps at
most this many rows is searched exactly through the metadata GIN index instead (see
``_try_exact``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from automate_core.providers.errors import invalid_argument
from rag import filters as rag_filters
from rag.providers._common import check_documents, check_ids, check_query
from rag.providers.base import BaseRetrievalProvider

BATCH_SIZE = 500
# Below this many matching rows a filtered query is answered exactly (see _try_exact):
# ordering ~1,000 rows of 384-d vectors costs about what an unfiltered HNSW query does.
EXACT_THRESHOLD = 1000
_ITERATIVE_SCAN = {"off", "relaxed_order", "strict_order"}
_REGCONFIG_RE = re.compile(r"^[a-z_]{1,63}$")


def _decoded(row: tuple) -> tuple:
    """Django hands raw SQL ``jsonb`` back as text; decode the metadata column (index 2)."""
    metadata = row[2]
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    return (row[0], row[1], metadata or {}, *row[3:])


def _vector_literal(values: list[float]) -> str:
    # pgvector stores float4: nine significant digits round-trip every float4 exactly, and
    # formatting them is several times faster than repr() of the doubles.
    return "[" + ",".join(map("%.9g".__mod__, values)) + "]"


class PgVectorRetrievalProvider(BaseRetrievalProvider):
    key = "pgvector"
    display_name = "PostgreSQL + pgvector"
    supports_text_query = True

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.namespace = str(self.config.get("namespace", ""))
        self.m = self._int("m", 16, 2, 100)
        self.ef_construction = self._int("ef_construction", 64, 4, 1000)
        self.ef_search = self._int("ef_search", 100, 1, 1000)
        self.filter_candidates = self._int("filter_candidates", 0, 0, 1000)
        self.exact_threshold = self._int("exact_threshold", EXACT_THRESHOLD, 0, 100_000)
        self.iterative_scan = str(self.config.get("iterative_scan", "relaxed_order"))
        if self.iterative_scan not in _ITERATIVE_SCAN:
            raise ImproperlyConfigured(
                f"pgvector iterative_scan must be one of {sorted(_ITERATIVE_SCAN)}"
            )
        self.hybrid = bool(self.config.get("hybrid", False))
        self.text_search_config = str(self.config.get("text_search_config", "english"))
        if not _REGCONFIG_RE.match(self.text_search_config):
            raise ImproperlyConfigured("pgvector text_search_config must be a configuration name")
        self.rrf_k = self._int("rrf_k", 60, 1, 10000)
        self.hybrid_candidates = self._int("hybrid_candidates", 50, 1, 1000)

    def _int(self, name: str, default: int, low: int, high: int) -> int:
        value = self.config.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ImproperlyConfigured(f"pgvector {name} must be an integer from {low} to {high}")
        return value

    # -- plumbing --------------------------------------------------------------------

    @property
    def model(self):
        if not apps.is_installed("rag.contrib.pgvector"):
            raise ImproperlyConfigured(
                'the pgvector retrieval provider needs "rag.contrib.pgvector" in INSTALLED_APPS'
            )
        return apps.get_model("rag_pgvector", "PgVectorEntry")

    def _check_postgres(self) -> None:
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured(
                f"the pgvector retrieval provider needs PostgreSQL, not {connection.vendor}"
            )

    @property
    def table(self) -> str:
        return connection.ops.quote_name(self.model._meta.db_table)

    def index_name(self, dimensions: int, kind: str = "hnsw") -> str:
        digest = hashlib.sha1(self.namespace.encode(), usedforsecurity=False).hexdigest()[:16]
        return f"rag_pgv_{digest}_{kind}{dimensions}"

    def stored_dimensions(self) -> int | None:
        return (
            self.model.objects.filter(namespace=self.namespace)
            .values_list("dimensions", flat=True)
            .first()
        )

    def _index_exists(self, name: str) -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [name])
            return cursor.fetchone() is not None

    def ensure_index(self, dimensions: int) -> bool:
        """Create this namespace's HNSW (and, for hybrid, full-text) index if missing.

        Returns True when an index was built. The HNSW index is over a cast to the
        namespace's dimension with cosine ops, limited to the namespace by its predicate;
        written as SQL because Django's index expressions cannot yet put an operator class
        after a cast.
        """
        self._check_postgres()
        built = False
        name = self.index_name(dimensions)
        with transaction.atomic(), connection.schema_editor(atomic=False) as editor:
            namespace = editor.quote_value(self.namespace)
            if not self._index_exists(name):
                # A building graph wants memory; this raises it for this transaction only.
                editor.execute("SELECT set_config('maintenance_work_mem', '256MB', true)")
                editor.execute(
                    f"CREATE INDEX IF NOT EXISTS {editor.quote_name(name)} "
                    f"ON {self.table} USING hnsw "
                    f"((embedding::vector({int(dimensions)})) vector_cosine_ops) "
                    f"WITH (m = {self.m}, ef_construction = {self.ef_construction}) "
                    f"WHERE namespace = {namespace}"
                )
                built = True
            text_name = self.index_name(dimensions, kind="fts")
            if self.hybrid and not self._index_exists(text_name):
                editor.execute(
                    f"CREATE INDEX IF NOT EXISTS {editor.quote_name(text_name)} ON {self.table} "
                    f"USING gin ({self._tsvector()}) WHERE namespace = {namespace}"
                )
                built = True
        return built

    def _tsvector(self) -> str:
        return f"to_tsvector('{self.text_search_config}'::regconfig, content)"

    # -- the provider API --------------------------------------------------------------

    def index_documents(self, documents: list[dict]) -> int:
        self._check_postgres()
        checked = check_documents(self.key, documents)
        if not checked:
            return 0
        dimensions = len(checked[0]["embedding"])
        held = self.stored_dimensions()
        if held is not None and held != dimensions:
            raise invalid_argument(
                None,
                f"namespace {self.namespace!r} holds {held}-dimension vectors, "
                f"these have {dimensions}",
                provider=self.key,
            )
        self._copy_upsert(checked, dimensions)
        self.ensure_index(dimensions)
        return len(checked)

    def _copy_upsert(self, documents: list[dict[str, Any]], dimensions: int) -> None:
        """Stream the batch with COPY into a temporary table, then upsert it in one statement.

        COPY moves vectors several times faster than multi-row INSERTs; the upsert keeps
        "the same id replaces" semantics. All or nothing: one transaction.
        """
        with transaction.atomic(), connection.cursor() as cursor:
            raw = cursor.cursor
            if not hasattr(raw, "copy"):
                raise ImproperlyConfigured("the pgvector retrieval provider needs psycopg 3")
            # Inside an outer transaction ON COMMIT DROP waits for its end: drop any leftover.
            cursor.execute("DROP TABLE IF EXISTS pg_temp.rag_pgvector_load")
            cursor.execute(
                "CREATE TEMP TABLE rag_pgvector_load (vector_id text, content text, "
                "metadata jsonb, embedding vector) ON COMMIT DROP"
            )
            with raw.copy(
                "COPY rag_pgvector_load (vector_id, content, metadata, embedding) FROM STDIN"
            ) as copy:
                for doc in documents:
                    copy.write_row(
                        (
                            doc["id"],
                            doc["content"],
                            json.dumps(doc["metadata"]),
                            _vector_literal(doc["embedding"]),
                        )
                    )
            cursor.execute(
                f"INSERT INTO {self.table} "
                "(namespace, vector_id, content, metadata, dimensions, embedding) "
                "SELECT %s, vector_id, content, metadata, %s, embedding FROM rag_pgvector_load "
                "ON CONFLICT (namespace, vector_id) DO UPDATE SET content = EXCLUDED.content, "
                "metadata = EXCLUDED.metadata, dimensions = EXCLUDED.dimensions, "
                "embedding = EXCLUDED.embedding",
                [self.namespace, dimensions],
            )
            cursor.execute("DROP TABLE pg_temp.rag_pgvector_load")

    def delete(self, ids: list[str]) -> int:
        check_ids(self.key, ids)
        deleted = 0
        for start in range(0, len(ids), BATCH_SIZE):
            chunk = ids[start : start + BATCH_SIZE]
            count, _ = self.model.objects.filter(
                namespace=self.namespace, vector_id__in=chunk
            ).delete()
            deleted += count
        return deleted

    def _vector_sql(
        self, query: list[float], limit: int, conditions: list[rag_filters.Condition]
    ) -> tuple[str, list[Any]]:
        """The nearest ``limit`` rows; with a filter, chosen among the nearest
        ``filter_candidates`` matching rows when that is larger."""
        pool = max(limit, self.filter_candidates) if conditions else limit
        dims = len(query)
        distance = f"(embedding::vector({dims}) <=> %s::vector({dims}))"
        where = "namespace = %s"
        params: list[Any] = [_vector_literal(query), self.namespace]
        if conditions:
            filter_sql, filter_params = rag_filters.to_sql(conditions)
            where += f" AND {filter_sql}"
            params += filter_params
        # Relaxed-order iterative scans may return rows slightly out of order: the outer
        # ORDER BY over the materialized CTE restores the exact order.
        # Only quoted names and integers are spliced in; every value is a parameter.
        sql = (
            f"WITH nearest AS MATERIALIZED ("
            f"SELECT vector_id, content, metadata, {distance} AS distance "
            f"FROM {self.table} WHERE {where} ORDER BY {distance} LIMIT %s) "
            "SELECT vector_id, content, metadata, distance FROM nearest "
            "ORDER BY distance, vector_id LIMIT %s"
        )
        return sql, [params[0], *params[1:], params[0], pool, limit]

    def _exact_sql(
        self,
        query: list[float],
        limit: int,
        index: tuple[str, list[Any], list[rag_filters.Condition]],
    ) -> tuple[str, list[Any]]:
        """The nearest ``limit`` matching rows by computing every match's distance, when
        at most ``exact_threshold`` rows match; each row also carries the number of
        matches found, which stops one past the threshold.

        The matches come through the metadata GIN index; the MATERIALIZED CTE has no
        ORDER BY on the distance, so the HNSW index can never be chosen for it. Whether
        the answer is usable is decided by that count, not by the planner's statistics.
        """
        dims = len(query)
        where, params = index[0], [*index[1]]
        if index[2]:
            filter_sql, filter_params = rag_filters.to_sql(index[2])
            where += f" AND {filter_sql}"
            params += filter_params
        # Only the ids and distances of the matches are kept; the content and metadata
        # are read for the best ``limit`` alone.
        sql = (
            f"WITH matching AS MATERIALIZED ("
            f"SELECT id, vector_id, "
            f"(embedding::vector({dims}) <=> %s::vector({dims})) AS distance "
            f"FROM {self.table} WHERE namespace = %s AND {where} "
            "LIMIT %s), "
            "best AS (SELECT id, distance FROM matching ORDER BY distance, vector_id LIMIT %s) "
            "SELECT e.vector_id, e.content, e.metadata, best.distance, "
            f"(SELECT count(*) FROM matching) AS matched FROM best JOIN {self.table} e "
            "ON e.id = best.id ORDER BY best.distance, e.vector_id"
        )
        return sql, [
            _vector_literal(query),
            self.namespace,
            *params,
            self.exact_threshold + 1,
            limit,
        ]

    def _try_exact(
        self, cursor, query: list[float], limit: int, conditions: list[rag_filters.Condition]
    ) -> tuple[str, list[Any], list[tuple]] | None:
        """The exact query, its parameters and its rows when the filter keeps at most
        ``exact_threshold`` rows; None when the HNSW query should answer instead.

        A selective filter sends an HNSW scan through much of the graph before it finds
        ``limit`` matches (slow, and relaxed order can miss some); fetching the few
        matches and sorting them is faster and exact. Only filters with an equality the
        GIN index can serve are tried (any other would need a scan to count): one round
        trip for a selective filter, at most ``exact_threshold + 1`` wasted distances
        for the others.
        """
        index = rag_filters.index_sql(conditions) if self.exact_threshold else None
        if index is None:
            return None
        sql, params = self._exact_sql(query, limit, index)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        if rows and rows[0][4] > self.exact_threshold:
            return None
        return sql, params, [_decoded(row[:4]) for row in rows]

    @contextmanager
    def _search_options(self) -> Iterator[Any]:
        """A cursor in a transaction with this provider's HNSW settings, restored after.

        ``set_config(..., true)`` lasts until the end of the transaction: in autocommit
        mode this query's own transaction ends right after it. When the caller already
        holds one (``ATOMIC_REQUESTS``, a test), the old values are read first and put back
        so the settings never leak past this query (two more round trips).
        """
        outer = connection.in_atomic_block
        with transaction.atomic(), connection.cursor() as cursor:
            previous = None
            if outer:
                cursor.execute(
                    "SELECT current_setting('hnsw.ef_search'), "
                    "current_setting('hnsw.iterative_scan')"
                )
                previous = cursor.fetchone()
            cursor.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.iterative_scan', %s, true)",
                [str(self.ef_search), self.iterative_scan],
            )
            # On an error the savepoint's rollback restores them, and a failed transaction
            # would refuse this statement anyway.
            yield cursor
            if previous is not None:
                cursor.execute(
                    "SELECT set_config('hnsw.ef_search', %s, true), "
                    "set_config('hnsw.iterative_scan', %s, true)",
                    list(previous),
                )

    def _prepare(self, query_embedding: list[float], top_k: int, filters: dict | None):
        self._check_postgres()
        query, conditions = check_query(self.key, query_embedding, top_k, filters)
        held = self.stored_dimensions()
        if held is not None and held != len(query):
            raise invalid_argument(
                None,
                f"the query has {len(query)} dimensions, namespace {self.namespace!r} "
                f"holds {held}: is the embedding model the same?",
                provider=self.key,
            )
        return query, conditions, held

    def retrieve(
        self,
        query_embedding: list[float],
        top_k: int = 5,
        filters: dict | None = None,
        query_text: str | None = None,
    ) -> list[dict]:
        query, conditions, held = self._prepare(query_embedding, top_k, filters)
        if held is None:
            return []
        hybrid = self.hybrid and bool(query_text and query_text.strip())
        limit = max(top_k, self.hybrid_candidates) if hybrid else top_k
        with self._search_options() as cursor:
            exact = self._try_exact(cursor, query, limit, conditions)
            if exact is not None:
                vector_rows = exact[2]
            else:
                cursor.execute(*self._vector_sql(query, limit, conditions))
                vector_rows = [_decoded(row) for row in cursor.fetchall()]
            text_rows = (
                self._text_search(cursor, str(query_text), limit, conditions) if hybrid else []
            )
        if not hybrid:
            return [
                {"id": vid, "score": 1.0 - float(dist), "content": content, "metadata": meta}
                for vid, content, meta, dist in vector_rows
            ]
        return self._fuse(vector_rows, text_rows, top_k)

    def _text_search(
        self, cursor, text: str, limit: int, conditions: list[rag_filters.Condition]
    ) -> list[tuple]:
        # Any of the query's words, not all of them: a question rarely repeats every word
        # of its answer, and ts_rank_cd still ranks passages with more of them first.
        tsquery = (
            f"replace(plainto_tsquery('{self.text_search_config}'::regconfig, %s)::text, "
            "' & ', ' | ')::tsquery"
        )
        where = f"namespace = %s AND {self._tsvector()} @@ {tsquery}"
        params: list[Any] = [self.namespace, text]
        if conditions:
            filter_sql, filter_params = rag_filters.to_sql(conditions)
            where += f" AND {filter_sql}"
            params += filter_params
        cursor.execute(
            f"SELECT vector_id, content, metadata FROM {self.table} WHERE {where} "
            f"ORDER BY ts_rank_cd({self._tsvector()}, {tsquery}) DESC, vector_id LIMIT %s",
            [*params, text, limit],
        )
        return [_decoded(row) for row in cursor.fetchall()]

    def _fuse(self, vector_rows: list[tuple], text_rows: list[tuple], top_k: int) -> list[dict]:
        """Reciprocal rank fusion: each list adds ``1 / (rrf_k + rank)`` to a passage."""
        scores: dict[str, float] = {}
        found: dict[str, tuple[str, dict]] = {}
        for rows in (vector_rows, text_rows):
            for rank, row in enumerate(rows, start=1):
                scores[row[0]] = scores.get(row[0], 0.0) + 1.0 / (self.rrf_k + rank)
                found[row[0]] = (row[1], row[2])
        order = sorted(scores, key=lambda vid: (-scores[vid], vid))[:top_k]
        return [
            {"id": vid, "score": scores[vid], "content": found[vid][0], "metadata": found[vid][1]}
            for vid in order
        ]

    def explain(
        self, query_embedding: list[float], top_k: int = 5, filters: dict | None = None
    ) -> str:
        """PostgreSQL's plan for a vector query (exact or HNSW, as ``retrieve`` would
        choose), with this provider's search settings."""
        query, conditions, _ = self._prepare(query_embedding, top_k, filters)
        with self._search_options() as cursor:
            exact = self._try_exact(cursor, query, top_k, conditions)
            sql, params = exact[:2] if exact else self._vector_sql(query, top_k, conditions)
            cursor.execute(f"EXPLAIN {sql}", params)
            return "\n".join(row[0] for row in cursor.fetchall())

"""Putting documents into a knowledge base: chunk, embed, index, record.

The order is chosen so a failure loses nothing: chunks are embedded and written to the
store before any row changes, and the database rows change in one transaction after the
store accepted the vectors. A failure before that leaves the previous version of the
document fully in place; running the ingestion again finishes the job. Unchanged content
(same hash, same chunking) is skipped without calling any provider.

Many documents at once (:func:`ingest_documents`, which :func:`ingest_paths` uses) go
through in waves of about ``batch_passages`` passages: a wave's passages are sorted by
length (the embedder's token count when it gives one) so each embedding batch holds
passages of nearly one length and little padding, and the next wave's batches are
embedded on embedding threads while the calling thread writes the previous wave to the
store and the database. Writes stay on the caller's thread, so its connection and
transaction apply. There are as many embedding threads as the provider can use at once
(:meth:`~rag.embeddings.base.BaseEmbeddingProvider.embedding_threads`: one for a hosted
service, torch's intra-op threads for the local model); they take the batches in order
and the vectors are put back in order. The threads are kept per process (a pool per
thread count, started at the first call): concurrent ingestions take turns on them, as
they would on the CPU the model's matrix products use.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from automate_core.offloop import HelperThread
from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument
from rag.chunking import chunk_text
from rag.embeddings.base import BaseEmbeddingProvider
from rag.models import Chunk, Document, KnowledgeBase
from rag.providers.base import BaseRetrievalProvider

TEXT_SUFFIXES = {".md": True, ".markdown": True, ".txt": False}
EMBED_BATCH = 64
#: Passages per wave of :func:`ingest_documents` (embedded while the wave before is written).
WAVE_PASSAGES = 512
MAX_SOURCE_LENGTH = 500

#: The process's embedding threads by their number: each pool started on first use,
#: started over in a forked child (a prefork worker), as
#: :class:`~automate_core.offloop.HelperThread` does.
_embedders: dict[int, HelperThread] = {}


def embed_pool(threads: int = 1) -> ThreadPoolExecutor:
    """The executor of the process's ``threads`` embedding threads for
    :func:`ingest_documents` (a pool per call started and joined threads per ingestion)."""
    helper = _embedders.get(threads)
    if helper is None:
        # setdefault is atomic: two first calls at once share one helper.
        helper = _embedders.setdefault(threads, HelperThread("rag-embed", threads=threads))
    return helper.executor()


@dataclass
class IngestResult:
    source: str
    status: str  # "created", "updated" or "unchanged"
    chunks: int = 0
    stale_ids: list[str] = field(default_factory=list)  # left in a store that cannot delete


def _hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _fingerprint(kb: KnowledgeBase, text: str) -> str:
    """The content hash, salted with what shapes the chunks and their vectors."""
    return _hash(
        text,
        str(kb.chunk_size),
        str(kb.chunk_overlap),
        kb.embedding_provider,
        repr(sorted((kb.embedding_config or {}).items())),
    )


def _title(text: str, source: str) -> str:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()[:300]
    return Path(source).stem.replace("-", " ").replace("_", " ")[:300]


@dataclass
class IngestProgress:
    """Where :func:`ingest_documents` is: handed to its ``progress`` callback per document."""

    documents_done: int
    documents_total: int
    passages_done: int
    elapsed: float  # seconds since the ingestion started
    source: str  # the document just finished

    @property
    def rate(self) -> float:
        """Passages written per second so far."""
        return self.passages_done / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class _Pending:
    """A document that needs embedding: its passages, and what its rows will hold."""

    source: str
    text: str
    title: str
    metadata: dict[str, Any]
    content_hash: str
    existing: Document | None
    records: list[dict[str, Any]]


def _check(source: Any, text: Any, metadata: Any) -> None:
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_LENGTH:
        raise invalid_argument(
            None, f"source must be 1-{MAX_SOURCE_LENGTH} characters", source=str(source)[:100]
        )
    if not isinstance(text, str) or not text.strip():
        raise invalid_argument(None, f"{source}: the document is empty", source=source)
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid_argument(None, f"{source}: metadata must be an object", source=source)


def _plan(
    kb: KnowledgeBase,
    source: str,
    text: str,
    *,
    title: str | None,
    metadata: dict[str, Any] | None,
    markdown: bool,
    force: bool,
) -> IngestResult | _Pending:
    """The unchanged result, or the document's passages to embed."""
    _check(source, text, metadata)
    metadata = dict(metadata or {})
    title = (title or _title(text, source))[:300]
    content_hash = _fingerprint(kb, text)
    existing = Document.objects.filter(knowledge_base=kb, source=source).first()
    if (
        existing is not None
        and not force
        and existing.content_hash == content_hash
        and existing.title == title
        and existing.metadata == metadata
    ):
        return IngestResult(source, "unchanged", existing.chunks.count())

    pieces = chunk_text(text, kb.chunk_size, kb.chunk_overlap, markdown=markdown)
    prefix = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()[:16]
    records: list[dict[str, Any]] = []
    for piece in pieces:
        chunk_metadata = {
            **metadata,
            "source": source,
            "title": title,
            "chunk": piece.ordinal,
            "heading": piece.heading,
        }
        records.append(
            {
                "id": f"{prefix}-{piece.ordinal}",
                "content": piece.content,
                # Stores built like the spec's PineconeProvider keep only the metadata.
                "metadata": {**chunk_metadata, "content": piece.content},
            }
        )
    return _Pending(source, text, title, metadata, content_hash, existing, records)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions of ``lengths`` grouped into batches of at most ``batch_size``, shortest
    first, so that each batch's items are of nearly one length (a batch is padded to its
    longest item). Ties keep their order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), max(1, batch_size))]


def _batch_size(embedder: BaseEmbeddingProvider) -> int:
    return int(getattr(embedder, "batch_size", EMBED_BATCH) or EMBED_BATCH)


def _in_order(
    embedder: BaseEmbeddingProvider,
    provider: str,
    count: int,
    batches: list[list[int]],
    found: list[list[list[float]]],
) -> list[list[float]]:
    """The vectors of each batch in ``found`` put back at their texts' positions."""
    vectors: list[list[float] | None] = [None] * count
    wrong = False
    for batch, batch_vectors in zip(batches, found, strict=True):
        wrong = wrong or len(batch_vectors) != len(batch)
        for position, vector in zip(batch, batch_vectors, strict=False):
            vectors[position] = vector
    if wrong or any(v is None or len(v) != embedder.vector_size for v in vectors):
        raise AutomateError(
            ErrorCodes.INTERNAL,
            f"embedding provider {provider!r} returned vectors of the wrong "
            f"count or size (expected {count} x {embedder.vector_size})",
            provider=provider,
        )
    return vectors  # type: ignore[return-value]


def embed_passages(
    embedder: BaseEmbeddingProvider, texts: list[str], kb: KnowledgeBase | None = None
) -> list[list[float]]:
    """Vectors for ``texts`` in order, embedded in batches of passages of similar length."""
    if not texts:
        return []
    provider = kb.embedding_provider if kb is not None else embedder.key
    batches = length_batches(embedder.text_lengths(texts), _batch_size(embedder))
    found = []
    for batch in batches:
        found.append(embedder.embed_documents([texts[i] for i in batch]))
    return _in_order(embedder, provider, len(texts), batches, found)


def _write(
    kb: KnowledgeBase, retriever: BaseRetrievalProvider, pending: list[_Pending]
) -> list[IngestResult]:
    """Store the passages of ``pending`` (embedded), then their rows in one transaction."""
    retriever.index_documents([record for doc in pending for record in doc.records])
    stale: dict[str, list[str]] = {}
    results: list[IngestResult] = []
    with transaction.atomic():
        chunks: list[Chunk] = []
        for doc in pending:
            if doc.existing is None:
                document = Document.objects.create(
                    knowledge_base=kb,
                    source=doc.source,
                    title=doc.title,
                    content=doc.text,
                    content_hash=doc.content_hash,
                    metadata=doc.metadata,
                )
                old_ids: set[str] = set()
            else:
                document = doc.existing
                old_ids = set(document.chunks.values_list("vector_id", flat=True))
                document.title, document.content = doc.title, doc.text
                document.content_hash, document.metadata = doc.content_hash, doc.metadata
                document.save()
                document.chunks.all().delete()
            chunks.extend(
                Chunk(
                    knowledge_base=kb,
                    document=document,
                    ordinal=index,
                    content=record["content"],
                    content_hash=_hash(record["content"]),
                    vector_id=record["id"],
                    metadata={k: v for k, v in record["metadata"].items() if k != "content"},
                )
                for index, record in enumerate(doc.records)
            )
            stale[doc.source] = sorted(old_ids - {r["id"] for r in doc.records})
            status = "created" if doc.existing is None else "updated"
            results.append(IngestResult(doc.source, status, len(doc.records)))
        Chunk.objects.bulk_create(chunks, batch_size=1000)
    for result in results:
        if stale[result.source]:
            try:
                retriever.delete(stale[result.source])
            except AutomateError:
                result.stale_ids = stale[result.source]
    return results


def ingest_text(
    kb: KnowledgeBase,
    source: str,
    text: str,
    *,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
    markdown: bool = True,
    force: bool = False,
) -> IngestResult:
    """Add or replace the document ``source`` of ``kb`` with ``text``."""
    planned = _plan(
        kb, source, text, title=title, metadata=metadata, markdown=markdown, force=force
    )
    if isinstance(planned, IngestResult):
        return planned
    embedder = kb.get_embedder()
    vectors = embed_passages(embedder, [r["content"] for r in planned.records], kb)
    for record, vector in zip(planned.records, vectors, strict=True):
        record["embedding"] = vector
    return _write(kb, kb.get_retriever(), [planned])[0]


@dataclass
class _Wave:
    """Documents whose passages are being embedded: the batches handed out, in order."""

    documents: list[_Pending]
    batches: list[list[int]]
    futures: list[Future[list[list[float]]]]


class _Embedding:
    """Hands each wave's batches to the embedding threads and puts their vectors back in
    order. The provider instance is shared by the threads (a local model's weights are
    read, never copied)."""

    def __init__(self, kb: KnowledgeBase, threads: int | None) -> None:
        self.embedder = kb.get_embedder()
        self.provider = kb.embedding_provider
        count = self.embedder.embedding_threads()
        self.threads = count if threads is None else max(1, min(count, threads))
        self.pool = embed_pool(self.threads)

    def submit(self, documents: list[_Pending]) -> _Wave:
        texts = [r["content"] for doc in documents for r in doc.records]
        batches = length_batches(self.embedder.text_lengths(texts), _batch_size(self.embedder))
        futures = [self.pool.submit(self._embed, [texts[i] for i in b]) for b in batches]
        return _Wave(documents, batches, futures)

    def _embed(self, texts: list[str]) -> list[list[float]]:
        self.embedder.prepare_embedding_thread()
        return self.embedder.embed_documents(texts)

    def collect(self, wave: _Wave) -> list[_Pending]:
        """The wave's documents with their vectors (waits for the batches)."""
        found = [future.result() for future in wave.futures]
        count = sum(len(doc.records) for doc in wave.documents)
        vectors = iter(_in_order(self.embedder, self.provider, count, wave.batches, found))
        for doc in wave.documents:
            for record in doc.records:
                record["embedding"] = next(vectors)
        return wave.documents


@dataclass
class SourceText:
    """One document for :func:`ingest_documents`."""

    source: str
    text: str
    title: str | None = None
    metadata: dict[str, Any] | None = None
    markdown: bool = True


def ingest_documents(
    kb: KnowledgeBase,
    documents: Iterable[SourceText],
    *,
    force: bool = False,
    progress: Callable[[IngestProgress], None] | None = None,
    batch_passages: int = WAVE_PASSAGES,
    threads: int | None = None,
) -> list[IngestResult]:
    """Ingest many documents, in waves of about ``batch_passages`` passages, each embedded
    while the one before is written. Results are in the order of ``documents``.

    ``threads`` caps the embedding threads (by default, as many as the provider can use:
    torch's intra-op threads for the local model, one for a hosted service).

    A failure stops the ingestion: the waves written before it stay, the documents of the
    failing wave and after it keep their previous version (run it again to finish).
    """
    documents = list(documents)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise invalid_argument(None, f"threads must be a positive integer, not {threads!r}")
    seen: set[str] = set()
    for doc in documents:
        if doc.source in seen:
            raise invalid_argument(
                None, f"{doc.source}: the same source is given twice", source=doc.source
            )
        seen.add(doc.source)
    embedding = _Embedding(kb, threads)
    retriever = kb.get_retriever()
    started = time.perf_counter()
    results: dict[str, IngestResult] = {}
    done_documents = done_passages = 0

    def report(result: IngestResult) -> None:
        nonlocal done_documents, done_passages
        results[result.source] = result
        done_documents += 1
        if result.status != "unchanged":
            done_passages += result.chunks
        if progress is not None:
            elapsed = time.perf_counter() - started
            progress(
                IngestProgress(
                    done_documents, len(documents), done_passages, elapsed, result.source
                )
            )

    def waves() -> Iterator[list[_Pending]]:
        wave: list[_Pending] = []
        size = 0
        for doc in documents:
            planned = _plan(
                kb,
                doc.source,
                doc.text,
                title=doc.title,
                metadata=doc.metadata,
                markdown=doc.markdown,
                force=force,
            )
            if isinstance(planned, IngestResult):
                report(planned)
                continue
            wave.append(planned)
            size += len(planned.records)
            if size >= batch_passages:
                yield wave
                wave, size = [], 0
        if wave:
            yield wave

    def write(wave: _Wave) -> None:
        for result in _write(kb, retriever, embedding.collect(wave)):
            report(result)

    # The next wave's batches are queued before the one before is written, so the
    # embedding threads have work while this thread writes.
    queued: list[_Wave] = []
    try:
        for wave in waves():
            queued.append(embedding.submit(wave))
            if len(queued) > 1:
                write(queued.pop(0))
        while queued:
            write(queued.pop(0))
    finally:
        # After a failure: embed nothing more, and let batches already being embedded
        # finish before returning, so no work of this call outlives it.
        futures = [future for wave in queued for future in wave.futures]
        for future in futures:
            future.cancel()
        wait(futures)
    return [results[doc.source] for doc in documents]


def delete_document(document: Document) -> None:
    """Remove a document's passages from the store, then its rows."""
    ids = list(document.chunks.values_list("vector_id", flat=True))
    if ids:
        document.knowledge_base.get_retriever().delete(ids)
    document.delete()


def delete_knowledge_base(kb: KnowledgeBase) -> None:
    """Remove a knowledge base's passages from its store, then its rows."""
    ids = list(kb.chunks.values_list("vector_id", flat=True))
    if ids:
        kb.get_retriever().delete(ids)
    kb.delete()


def iter_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every text or Markdown file under ``paths`` (files as given, folders recursively)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
            )
        elif path.is_file():
            if path.suffix.lower() not in TEXT_SUFFIXES:
                raise invalid_argument(
                    None,
                    f"{path}: only {', '.join(sorted(TEXT_SUFFIXES))} files can be ingested",
                    source=str(path),
                )
            yield path
        else:
            raise invalid_argument(None, f"{path}: no such file or folder", source=str(path))


def ingest_paths(
    kb: KnowledgeBase,
    paths: Iterable[str | Path],
    *,
    force: bool = False,
    progress: Callable[[int, int, Path], None] | None = None,
    on_progress: Callable[[IngestProgress], None] | None = None,
    threads: int | None = None,
) -> list[IngestResult]:
    """Ingest every file under ``paths``; the source of each is its path as given.

    ``progress(done, total, path)`` is called per file; ``on_progress`` receives an
    :class:`IngestProgress` (with the passage rate) instead. ``threads`` caps the
    embedding threads, as for :func:`ingest_documents`.
    """
    files = list(iter_files(paths))
    documents = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise invalid_argument(
                None, f"{path}: not UTF-8 text ({exc.reason})", source=str(path)
            ) from exc
        documents.append(
            SourceText(path.as_posix(), text, markdown=TEXT_SUFFIXES[path.suffix.lower()])
        )
    by_source = {doc.source: path for doc, path in zip(documents, files, strict=True)}

    def relay(step: IngestProgress) -> None:
        if progress is not None:
            progress(step.documents_done, step.documents_total, by_source[step.source])
        if on_progress is not None:
            on_progress(step)

    return ingest_documents(kb, documents, force=force, progress=relay, threads=threads)

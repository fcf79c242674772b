"""Putting documents into a knowledge base: chunk, embed, index, record.

The order is chosen so a failure loses nothing: chunks are embedded and written to the
store before any row changes, and the database rows change in one transaction after the
store accepted the vectors. A failure before that leaves the previous version of the
document fully in place; running the ingestion again finishes the job. Unchanged content
(same hash, same chunking) is skipped without calling any provider.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from automate_core.providers.errors import AutomateError, ErrorCodes, invalid_argument
from rag.chunking import chunk_text
from rag.models import Chunk, Document, KnowledgeBase

TEXT_SUFFIXES = {".md": True, ".markdown": True, ".txt": False}
EMBED_BATCH = 64
MAX_SOURCE_LENGTH = 500


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
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_LENGTH:
        raise invalid_argument(
            None, f"source must be 1-{MAX_SOURCE_LENGTH} characters", source=str(source)[:100]
        )
    if not isinstance(text, str) or not text.strip():
        raise invalid_argument(None, f"{source}: the document is empty", source=source)
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid_argument(None, f"{source}: metadata must be an object", source=source)
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

    embedder = kb.get_embedder()
    vectors: list[list[float]] = []
    for start in range(0, len(records), EMBED_BATCH):
        batch = [r["content"] for r in records[start : start + EMBED_BATCH]]
        vectors.extend(embedder.embed_documents(batch))
    if len(vectors) != len(records) or any(len(v) != embedder.vector_size for v in vectors):
        raise AutomateError(
            ErrorCodes.INTERNAL,
            f"embedding provider {kb.embedding_provider!r} returned vectors of the wrong "
            f"count or size (expected {len(records)} x {embedder.vector_size})",
            provider=kb.embedding_provider,
        )
    for record, vector in zip(records, vectors, strict=True):
        record["embedding"] = vector

    retriever = kb.get_retriever()
    retriever.index_documents(records)

    new_ids = {r["id"] for r in records}
    with transaction.atomic():
        if existing is None:
            document = Document.objects.create(
                knowledge_base=kb,
                source=source,
                title=title,
                content=text,
                content_hash=content_hash,
                metadata=metadata,
            )
            old_ids: set[str] = set()
        else:
            document = existing
            old_ids = set(document.chunks.values_list("vector_id", flat=True))
            document.title, document.content = title, text
            document.content_hash, document.metadata = content_hash, metadata
            document.save()
            document.chunks.all().delete()
        Chunk.objects.bulk_create(
            [
                Chunk(
                    knowledge_base=kb,
                    document=document,
                    ordinal=index,
                    content=record["content"],
                    content_hash=_hash(record["content"]),
                    vector_id=record["id"],
                    metadata={k: v for k, v in record["metadata"].items() if k != "content"},
                )
                for index, record in enumerate(records)
            ]
        )
    result = IngestResult(source, "created" if existing is None else "updated", len(records))
    stale = sorted(old_ids - new_ids)
    if stale:
        try:
            retriever.delete(stale)
        except AutomateError:
            result.stale_ids = stale
    return result


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
) -> list[IngestResult]:
    """Ingest every file under ``paths``; the source of each is its path as given."""
    files = list(iter_files(paths))
    results = []
    for position, path in enumerate(files, start=1):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise invalid_argument(
                None, f"{path}: not UTF-8 text ({exc.reason})", source=str(path)
            ) from exc
        results.append(
            ingest_text(
                kb,
                path.as_posix(),
                text,
                markdown=TEXT_SUFFIXES[path.suffix.lower()],
                force=force,
            )
        )
        if progress is not None:
            progress(position, len(files), path)
    return results

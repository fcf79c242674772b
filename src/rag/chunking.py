"""Splitting text and Markdown into overlapping chunks of bounded size.

Markdown is split at headings first, and every chunk of a section starts with the section's
heading path ("Account > Passwords"), so a passage keeps the context that makes it findable.
Within a section, paragraphs are packed up to ``size`` characters; a paragraph that alone is
too long is cut at sentence, then word, boundaries. Each chunk after the first of a section
repeats up to ``overlap`` characters from the end of the one before, so a sentence cut at a
boundary is whole in one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE_RE = re.compile(r"^(```|~~~)")
_SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class TextChunk:
    ordinal: int
    content: str
    heading: str


def _sections(text: str, markdown: bool) -> list[tuple[str, str]]:
    """``(heading path, body)`` pairs in document order."""
    if not markdown:
        return [("", text)]
    sections: list[tuple[str, list[str]]] = [("", [])]
    path: list[tuple[int, str]] = []
    in_fence = False
    for line in text.splitlines():
        if _FENCE_RE.match(line.strip()):
            in_fence = not in_fence
        match = None if in_fence else _HEADING_RE.match(line)
        if match:
            level = len(match.group(1))
            path = [(lvl, title) for lvl, title in path if lvl < level]
            path.append((level, match.group(2).strip()))
            sections.append((" > ".join(title for _, title in path), []))
        else:
            sections[-1][1].append(line)
    return [(heading, "\n".join(lines)) for heading, lines in sections]


def _pieces(paragraph: str, size: int) -> list[str]:
    """Cut one paragraph into pieces of at most ``size`` characters."""
    if len(paragraph) <= size:
        return [paragraph]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_RE.split(paragraph):
        words = [sentence] if len(sentence) <= size else sentence.split()
        for word in words:
            while len(word) > size:  # one unbroken token longer than a chunk
                if current:
                    pieces.append(current)
                    current = ""
                pieces.append(word[:size])
                word = word[size:]
            candidate = f"{current} {word}" if current else word
            if len(candidate) <= size:
                current = candidate
            else:
                pieces.append(current)
                current = word
    if current:
        pieces.append(current)
    return pieces


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``text``, starting at a word when possible."""
    if overlap <= 0 or not text:
        return ""
    if len(text) <= overlap:
        return text
    tail = text[-overlap:]
    match = re.search(r"\s+", tail)
    return tail[match.end() :] if match and match.end() < len(tail) else tail


def chunk_text(
    text: str, size: int = 800, overlap: int = 100, *, markdown: bool = True
) -> list[TextChunk]:
    """Split ``text`` into chunks of at most ``size`` characters (headings included)."""
    if size < 50:
        raise ValueError("chunk size must be at least 50 characters")
    if not 0 <= overlap < size:
        raise ValueError("chunk overlap must be at least 0 and smaller than the chunk size")
    chunks: list[TextChunk] = []
    for heading, body in _sections(text, markdown):
        # A heading path never takes more than half a chunk, so the text always fits.
        prefix = f"{heading[: size // 2 - 2]}\n\n" if heading else ""
        room = size - len(prefix)
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
        if not paragraphs:
            continue
        # Long paragraphs are cut shorter than a chunk to leave room for the overlap.
        piece_size = max(room - overlap - 2, room // 2)
        pieces = [piece for paragraph in paragraphs for piece in _pieces(paragraph, piece_size)]
        current = ""
        for piece in pieces:
            candidate = f"{current}\n\n{piece}" if current else piece
            if len(candidate) <= room:
                current = candidate
                continue
            chunks.append(TextChunk(len(chunks), prefix + current, heading))
            carry = _tail(current, min(overlap, room - len(piece) - 2))
            current = f"{carry}\n\n{piece}" if carry else piece
        if current:
            chunks.append(TextChunk(len(chunks), prefix + current, heading))
    return chunks

from __future__ import annotations

import itertools

import pytest

from rag.chunking import chunk_text


def test_chunk_text__markdown_chunks_carry_their_heading_path():
    text = "# Account\n\nIntro.\n\n## Passwords\n\nReset it from the sign-in page.\n"
    chunks = chunk_text(text, size=200, overlap=20)
    assert [c.heading for c in chunks] == ["Account", "Account > Passwords"]
    assert chunks[1].content == "Account > Passwords\n\nReset it from the sign-in page."


def test_chunk_text__respects_size_and_loses_no_words():
    words = [f"w{i}" for i in range(600)]
    text = ". ".join(" ".join(words[i : i + 12]) for i in range(0, 600, 12)) + "."
    chunks = chunk_text(text, size=120, overlap=30, markdown=False)
    assert len(chunks) > 10
    assert all(len(c.content) <= 120 for c in chunks)
    seen = {w.strip(".") for c in chunks for w in c.content.split()}
    assert seen >= set(words)


def test_chunk_text__consecutive_chunks_overlap():
    text = " ".join(f"word{i}." for i in range(200))
    chunks = chunk_text(text, size=100, overlap=30, markdown=False)
    for before, after in itertools.pairwise(chunks):
        assert after.content.split()[0] in before.content


def test_chunk_text__splits_a_token_longer_than_a_chunk():
    chunks = chunk_text("x" * 250, size=100, overlap=0, markdown=False)
    assert "".join(c.content for c in chunks) == "x" * 250


def test_chunk_text__headings_inside_code_fences_are_text():
    text = "# Guide\n\n```\n# not a heading\n```\n"
    chunks = chunk_text(text, size=200, overlap=0)
    assert [c.heading for c in chunks] == ["Guide"]
    assert "# not a heading" in chunks[0].content


@pytest.mark.parametrize(("size", "overlap"), [(10, 0), (100, 100), (100, -1)])
def test_chunk_text__rejects_bad_sizes(size, overlap):
    with pytest.raises(ValueError):
        chunk_text("text", size=size, overlap=overlap)

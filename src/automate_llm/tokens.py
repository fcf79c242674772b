"""Counting tokens without a network: tiktoken when its encoding is on disk, else an estimate.

tiktoken downloads each encoding's BPE file (cl100k_base is ~1.7 MB) from OpenAI's blob
storage the first time it is used, and caches it under ``$TIKTOKEN_CACHE_DIR`` (or
``$DATA_GYM_CACHE_DIR``, or ``<tmp>/data-gym-cache``). Where the network is closed that
first use fails - after a DNS or connect timeout, on a worker thread, in the middle of a
workflow. So we never let tiktoken download:

* we look for the encoding's file in tiktoken's cache ourselves, check its SHA-256 against
  the published hash, and only then call ``tiktoken.get_encoding`` (which then reads the
  cache and opens no socket);
* otherwise we use :func:`estimate_tokens`, documented below.

We do not ship the BPE files in this package: they are OpenAI's data, 1.7-3.6 MB each, and
a project that needs exact counts can cache them at build time on a machine with network::

    TIKTOKEN_CACHE_DIR=/app/tiktoken python -c \\
        "import tiktoken; tiktoken.get_encoding('cl100k_base'); tiktoken.get_encoding('o200k_base')"

and set ``TIKTOKEN_CACHE_DIR=/app/tiktoken`` where the project runs.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tempfile
from functools import lru_cache
from typing import Any

#: Where tiktoken fetches each encoding and the SHA-256 it expects (tiktoken_ext.openai_public).
ENCODING_FILES: dict[str, tuple[str, str]] = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "p50k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
        "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    ),
    "r50k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
        "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
    ),
}

DEFAULT_ENCODING = "cl100k_base"

# ASCII letter runs, digit runs, and every other visible character on its own.
_PIECES = re.compile(r"[A-Za-z]+|[0-9]+|\S")


def estimate_tokens(text: str) -> int:
    """A deterministic estimate of the tokens a BPE tokenizer makes of ``text``.

    Rules, from how cl100k/o200k-style tokenizers split text: a run of ASCII letters costs
    one token per 4 letters (rounded up), a run of digits one per 3 digits (they are
    grouped by three), and every other visible character - punctuation, symbols, letters
    outside ASCII, CJK, emoji - one token each; whitespace is free. For English prose it
    lands within about 25% of cl100k_base, erring high, which is the safe side for budgets
    and context limits; it is an estimate, never a count.
    """
    if not text:
        return 0
    total = 0
    for piece in _PIECES.findall(text):
        first = piece[0]
        if first.isascii() and first.isalpha():
            total += math.ceil(len(piece) / 4)
        elif first.isascii() and first.isdigit():
            total += math.ceil(len(piece) / 3)
        else:
            total += 1
    return total


def tiktoken_cache_dir() -> str:
    """The directory tiktoken reads its cache from, by tiktoken's own rules."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def cached_encoding_path(name: str) -> str | None:
    """The verified cache file of encoding ``name``, or ``None`` when tiktoken would download."""
    known = ENCODING_FILES.get(name)
    cache_dir = tiktoken_cache_dir()
    if known is None or not cache_dir:
        return None
    url, expected = known
    path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())  # noqa: S324
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return path if _file_matches(path, stat.st_size, stat.st_mtime_ns, expected) else None


@lru_cache(maxsize=16)
def _file_matches(path: str, size: int, mtime_ns: int, expected: str) -> bool:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest() == expected


def offline_encoding(name: str) -> Any | None:
    """The tiktoken ``Encoding`` ``name`` if it can be built without a network, else None."""
    if cached_encoding_path(name) is None:
        return None
    try:
        import tiktoken
    except ImportError:
        return None
    return tiktoken.get_encoding(name)


def encoding_for_model(model: str | None) -> str:
    """tiktoken's encoding name for an OpenAI model; cl100k_base for anything else."""
    if model:
        try:
            import tiktoken.model
        except ImportError:
            return DEFAULT_ENCODING
        try:
            return tiktoken.model.encoding_name_for_model(model)
        except KeyError:
            return DEFAULT_ENCODING
    return DEFAULT_ENCODING


def count_tokens(text: str, *, model: str | None = None, encoding: str | None = None) -> int:
    """Exact with tiktoken when the encoding is cached on disk, :func:`estimate_tokens` else."""
    enc = offline_encoding(encoding or encoding_for_model(model))
    if enc is None:
        return estimate_tokens(text)
    return len(enc.encode(text, disallowed_special=()))

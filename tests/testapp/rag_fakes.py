"""A deterministic, dependency-free embedding provider for tests of the RAG plumbing.

Words are hashed into a fixed number of buckets (the "hashing trick"), so texts that share
words get similar vectors: good enough to test ingestion, stores and the API without a
model, and exact across runs and machines.
"""

from __future__ import annotations

import hashlib
import math
import re

from rag.embeddings.base import BaseEmbeddingProvider

_WORD_RE = re.compile(r"[a-z0-9]+")


def hashing_vector(text: str, dimensions: int = 64) -> list[float]:
    vector = [0.0] * dimensions
    for word in _WORD_RE.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "big") % dimensions
        sign = 1.0 if digest[4] % 2 else -1.0
        vector[bucket] += sign
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class HashingEmbeddingProvider(BaseEmbeddingProvider):
    key = "test_hashing"
    dimensions = 64
    calls: list[list[str]] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        type(self).calls.append(list(texts))
        return [hashing_vector(text, self.dimensions) for text in texts]

"""The local model as several threads share it: one set of weights, tokenizing in turn.

Imported only when a model is loaded (sentence-transformers is the optional ``local``
extra), by :func:`rag.embeddings.local.load_model`.
"""

from __future__ import annotations

import threading
from typing import Any

from sentence_transformers import SentenceTransformer

#: Texts tokenized per hold of the lock when counting tokens, so that counting a whole
#: wave never keeps an embedding thread from tokenizing its batch for long.
COUNT_SLICE = 64


class SharedSentenceTransformer(SentenceTransformer):
    """A ``SentenceTransformer`` that tokenizes under a lock, so threads can share it.

    A Hugging Face fast tokenizer keeps its padding and truncation settings on its one
    Rust object and changes them per call when they differ. Two threads tokenizing at once
    run with each other's settings (a batch left unpadded fails to become a tensor, a
    token count comes back padded) or meet PyO3's "Already borrowed". Tokenizing is a few
    per cent of an embedding's CPU; the forward passes, which read the weights only, still
    run at the same time.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Re-entrant: sentence-transformers 6's tokenize() calls preprocess().
        self.tokenizing = threading.RLock()

    # encode() tokenizes each batch in preprocess() (sentence-transformers 6) or in
    # tokenize() (earlier versions, which have no preprocess()).
    def preprocess(self, *args: Any, **kwargs: Any) -> Any:
        with self.tokenizing:
            return super().preprocess(*args, **kwargs)

    def tokenize(self, *args: Any, **kwargs: Any) -> Any:
        with self.tokenizing:
            return super().tokenize(*args, **kwargs)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Each text's length in tokens as the model reads it (cut at its maximum)."""
        limit = self.max_seq_length
        counts: list[int] = []
        for start in range(0, len(texts), COUNT_SLICE):
            with self.tokenizing:
                encoded = self.tokenizer(
                    texts[start : start + COUNT_SLICE],
                    add_special_tokens=True,
                    truncation=True,
                    max_length=limit,
                )
            counts.extend(len(ids) for ids in encoded["input_ids"])
        return counts

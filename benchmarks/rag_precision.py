"""Embedding arithmetic variants of the local model: CPU cost and closeness to fp32.

    PYTHONPATH=src:.:example python -m benchmarks.rag_precision [--variants fp32,bf16,...]
        [--rounds 2] [--step 10] [--quality]

The passages are ``benchmarks.rag``'s ingestion sample (whole files of the Python docs,
chunks 800/100, the same seeded choice), embedded in length-sorted batches of 32 as
``ingest_documents`` does. Every ``--step``-th passage in length order is timed, each
variant in turn, ``--rounds`` times: passages per CPU second of this process (all its
threads), the measure to trust on a shared machine, and per wall second. Each row also
gives the cosine of its vectors with fp32's. ``--quality`` embeds the whole sample and 200
passages of the other files as queries with every variant: cosine with fp32 (mean, min)
and recall@10 of the variant's own search against fp32's exact top 10.

The int8 variants are ``torch.ao.quantization.quantize_dynamic`` of the encoder's Linear
layers (activations quantised per batch, VNNI kernels of the x86 or oneDNN backend): per
tensor (``q8pt``) or per output channel (``q8pc``); ``skipout`` keeps each layer's
feed-forward output projection (its input is the GELU's, with outliers) out of int8;
``_bf16`` runs what is not int8 under bf16 autocast. They are measured, not offered: see
docs/rag.md.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import random
import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS = (
    "fp32",
    "bf16",
    "q8pt",
    "q8pc",
    "q8pc_onednn",
    "q8pc_bf16",
    "q8pc_skipout",
    "q8pc_skipout_bf16",
)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sample(corpus) -> tuple[list[str], list[str]]:
    """``benchmarks.rag.run_ingest``'s passages, and 200 queries from the other files."""
    from benchmarks.rag import corpus_documents, corpus_passages
    from rag.chunking import chunk_text

    documents = corpus_documents(corpus)
    random.Random(7).shuffle(documents)
    taken, count = 0, 0
    for _, text in documents:
        if count >= 2000:
            break
        taken += 1
        count += len(chunk_text(text, 800, 100))
    texts = [c.content for _, text in documents[:taken] for c in chunk_text(text, 800, 100)]
    others = corpus_passages(documents[taken:], 800, 100)
    queries = [p["content"] for p in random.Random(19).sample(others, 200)]
    return texts, queries


def build(base: Any, name: str) -> tuple[Any, Callable[[], Any]]:
    """The model and the context its batches run in, for the variant ``name``."""
    import torch

    def autocast() -> Any:
        return torch.autocast("cpu", dtype=torch.bfloat16)

    if name == "fp32":
        return base, contextlib.nullcontext
    if name == "bf16":
        return base, autocast
    if not name.startswith("q8"):
        raise SystemExit(f"unknown variant {name!r}: one of {', '.join(VARIANTS)}")
    from torch.ao import quantization
    from torch.ao.nn.quantized import dynamic

    class Float32In(torch.nn.Module):
        # The quantised Linear takes float32 only; under autocast its input may be bf16.
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x.float())

    torch.backends.quantized.engine = "onednn" if "onednn" in name else "x86"
    model = copy.deepcopy(base)
    encoder = model[0].auto_model
    qconfig = (
        quantization.default_dynamic_qconfig
        if name.startswith("q8pt")
        else quantization.per_channel_dynamic_qconfig
    )
    spec = {
        path: qconfig
        for path, module in encoder.named_modules()
        if isinstance(module, torch.nn.Linear)
        and path.startswith("encoder.")
        and not ("skipout" in name and path.endswith(".output.dense"))
    }
    quantization.quantize_dynamic(encoder, spec, inplace=True)
    if not name.endswith("_bf16"):
        return model, contextlib.nullcontext
    for module in list(encoder.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, dynamic.Linear):
                setattr(module, child_name, Float32In(child))
    return model, autocast


def embed(model: Any, texts: list[str], context: Callable[[], Any]) -> np.ndarray:
    """Vectors of ``texts`` in order, in length-sorted batches of 32."""
    lengths = [
        len(ids)
        for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)[
            "input_ids"
        ]
    ]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    out = np.zeros((len(texts), model.get_sentence_embedding_dimension()), np.float32)
    for start in range(0, len(order), 32):
        batch = order[start : start + 32]
        with context():
            vectors = model.encode(
                [texts[i] for i in batch],
                batch_size=32,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        out[batch] = vectors.astype(np.float32)
    return out


def main() -> None:
    from benchmarks.rag import CORPUS
    from rag.embeddings.local import bundled_model_path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--step", type=int, default=10, help="time every n-th passage")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", action="store_true", help="cosine and recall, all passages")
    parser.add_argument("--corpus", default=CORPUS)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    names = [n for n in args.variants.split(",") if n]
    texts, queries = sample(args.corpus)
    base = SentenceTransformer(str(bundled_model_path()), device="cpu")
    built = {name: build(base, name) for name in names}
    lengths = [len(ids) for ids in base.tokenizer(texts, truncation=True)["input_ids"]]
    timed = [texts[i] for i in sorted(range(len(texts)), key=lambda i: lengths[i])[:: args.step]]
    reference = embed(base, timed, contextlib.nullcontext)
    for model, context in built.values():
        embed(model, timed[:32], context)  # warm up: first-call allocations and packing
    rates: dict[str, list[float]] = {name: [] for name in names}
    print(f"{len(timed)} of {len(texts)} passages, {args.threads} threads")
    for round_ in range(args.rounds):
        for name in names:
            model, context = built[name]
            torch.backends.quantized.engine = "onednn" if "onednn" in name else "x86"
            wall, cpu = time.perf_counter(), cpu_seconds()
            vectors = embed(model, timed, context)
            wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
            rates[name].append(len(timed) / cpu)
            cosine = (vectors * reference).sum(axis=1)
            print(
                f"round {round_} {name:18} {len(timed) / cpu:6.1f} passages/CPU s "
                f"{len(timed) / wall:6.1f} passages/s  cosine mean {cosine.mean():.5f} "
                f"min {cosine.min():.5f}",
                flush=True,
            )
    for name in names:
        print(f"{name:18} median {np.median(rates[name]):.1f} passages/CPU s")
    if not args.quality:
        return
    data = embed(base, texts, contextlib.nullcontext)
    asked = embed(base, queries, contextlib.nullcontext)
    truth = np.argsort(-(asked @ data.T), axis=1)[:, :10]
    for name in names:
        model, context = built[name]
        torch.backends.quantized.engine = "onednn" if "onednn" in name else "x86"
        got, got_q = embed(model, texts, context), embed(model, queries, context)
        cosine = np.concatenate([(got * data).sum(axis=1), (got_q * asked).sum(axis=1)])
        found = np.argsort(-(got_q @ got.T), axis=1)[:, :10]
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
        print(
            f"{name:18} {len(texts)} passages + {len(queries)} queries: cosine mean "
            f"{cosine.mean():.5f} min {cosine.min():.5f}, recall@10 {recall:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()

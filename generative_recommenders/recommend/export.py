"""Export a run as a self-contained retrieval artefact (CPU), served by ``artifact.py``.

``DIR/`` holds:

- ``query_encoder.pt``: TorchScript (``torch.jit.trace``; ``torch.jit.load(f)``) of
  ``(ids [B, N] int64, timestamps [B, N] int64, ratings [B, N] float32, lengths [B] int64,
  query_times [B] int64) -> queries [B, D] float32``: the package's one query-encoding function
  (``training.inputs.encode_queries``, which training-time evaluation and ``Recommender`` call)
  traced as it is; B is fixed (``manifest["batch_size"]``; the loader pads), N =
  ``max_sequence_length``. Only ATen operators: loading it needs torch alone.
- ``item_embeddings.npy`` [X, D] float32: the catalogue's retrieval embeddings (L2-normalised when
  the run normalised items), ``item_ids.npy`` [X] int64: their store codes.
- ``items.json``: ``{"ids": [the dataset's own id of each row], "titles": [...] | null}``.
- ``manifest.json``: format, version, model, similarity, sizes, file names, query-time rule, run.
- ``artifact.py``: a copy of the loader (torch, numpy, json only), so the folder is all you need.

Only dot-product runs can be exported: a MoL score needs the model's gating networks at query
time, which this format does not carry yet (:class:`UnsupportedExport`).

How the trace stays valid for every input: the encoders are causal, so the state at position
``n - 1`` does not depend on later positions; the traced program therefore runs every row at the
full width ``N + 1`` (a constant, so nothing the encoder derives from lengths on the host, e.g.
HSTU's length groups, varies between calls) and picks each row's state at ``length - 1`` with
tensor ops. While tracing, every ops function runs its reference formula (plain ATen ops: no
fbgemm operator, which would tie the program to fbgemm_gpu, and no custom autograd function, which
cannot be serialised; the "auto" kernels equal them up to float rounding). The traced program
is checked against the eager encoder on a second batch with other lengths before anything is
written.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from generative_recommenders.atomic import atomic_directory
from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.ops import kernels
from generative_recommenders.recommend import artifact
from generative_recommenders.recommend.recommender import Recommender
from generative_recommenders.training.inputs import encode_queries

BATCH_SIZE = 64


class UnsupportedExport(UserInputError):
    """The run cannot be exported in this format (one line saying why)."""


def _batch(
    ids: torch.Tensor,
    timestamps: torch.Tensor,
    ratings: torch.Tensor,
    lengths: torch.Tensor,
    query_times: torch.Tensor,
) -> SequenceBatch:
    zeros = torch.zeros_like(lengths)
    return SequenceBatch(
        rows=zeros,
        user_ids=zeros,
        ids=ids,
        lengths=lengths,
        timestamps=timestamps,
        ratings=ratings,
        target_ids=zeros,
        target_timestamps=query_times,
        target_ratings=zeros.float(),
    )


class QueryEncoder(nn.Module):
    """``encode_queries`` as one tensor program: histories and query times -> [B, D] queries."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(
        self,
        ids: torch.Tensor,
        timestamps: torch.Tensor,
        ratings: torch.Tensor,
        lengths: torch.Tensor,
        query_times: torch.Tensor,
    ) -> torch.Tensor:
        """ids, timestamps [B, N] int64, ratings [B, N], lengths [B], query_times [B] -> [B, D]."""
        batch = _batch(ids, timestamps, ratings, lengths, query_times)
        return encode_queries(self.encoder, batch, traceable=True)


@contextmanager
def _traceable_ops() -> Iterator[None]:
    """The reference kernels while tracing (the formulas: plain ATen ops, no fbgemm operator the
    traced program would need at load time), and no tracer warnings for host values that are
    constants here."""
    with kernels.using(kernels.REFERENCE), warnings.catch_warnings():
        # Host values the encoder reads are constants here (full-width rows, fixed batch);
        # the result is checked against the eager model anyway.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


def _example(batch: int, width: int, num_items: int, lengths: list[int], seed: int):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(batch, width, dtype=torch.int64)
    timestamps = torch.zeros(batch, width, dtype=torch.int64)
    query_times = torch.zeros(batch, dtype=torch.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = torch.randint(1, num_items + 1, (n,), generator=generator)
        steps = torch.randint(1, 100_000, (n + 1,), generator=generator)
        times = 1_000_000_000 + torch.cumsum(steps, 0)
        timestamps[b, :n] = times[:n]
        query_times[b] = times[n]
    lengths_t = torch.as_tensor(lengths, dtype=torch.int64)
    return ids, timestamps, torch.zeros(batch, width), lengths_t, query_times


def trace_query_encoder(rec: Recommender) -> torch.jit.ScriptModule:
    """Trace the run's encoder on CPU and check it on another batch (UserInputError if unequal)."""
    encoder = rec.encoder.to("cpu").eval()
    module = QueryEncoder(encoder).eval()
    N = rec.config.max_sequence_length
    max_id = rec.store.max_item_id
    first = [(b * 7) % N + 1 for b in range(BATCH_SIZE)]
    second = [[N, 0, 1, N // 2][b % 4] if b % 3 else (b * 5) % N for b in range(BATCH_SIZE)]
    try:
        with _traceable_ops(), torch.no_grad():
            traced = torch.jit.trace(
                module, _example(BATCH_SIZE, N, max_id, first, 0), check_trace=False
            )
        check = _example(BATCH_SIZE, N, max_id, second, 1)
        with torch.no_grad():
            expected = encode_queries(encoder, _batch(*check))  # the eager, jagged path
            got = traced(*check)
    finally:
        encoder.to(rec.device)
    if not torch.allclose(got, expected, atol=1e-5, rtol=1e-4):
        raise UserInputError(
            "--export: the traced query encoder does not reproduce the model on a second batch "
            f"(max difference {(got - expected).abs().max().item():.3g})"
        )
    return traced


def export_artifact(rec: Recommender, out_dir: str | Path) -> Path:
    """Write the artefact of ``rec``'s run to ``out_dir`` (atomically) and return its path."""
    if not isinstance(rec.encoder.similarity, DotProductSimilarity):
        raise UnsupportedExport(
            f"--export: the run uses {type(rec.encoder.similarity).__name__}; only dot-product "
            "runs can be exported (MoL needs its gating networks at query time)"
        )
    out = Path(out_dir)
    traced = trace_query_encoder(rec)
    titles = None
    if rec.titles is not None:
        titles = [rec.titles.get(int(c), "") for c in rec.items.codes.tolist()]
    manifest = {
        "format": artifact.FORMAT,
        "version": artifact.VERSION,
        "model": rec.config.main_module,
        "similarity": "dot_product",
        "max_sequence_length": rec.config.max_sequence_length,
        "embedding_dim": int(rec.item_embeddings.shape[1]),
        "num_items": int(rec.item_embeddings.shape[0]),
        "batch_size": BATCH_SIZE,
        "item_l2_norm": bool(rec.config.item_l2_norm),
        "query_time": "timestamp at index length = the last event's (default) or a given time",
        "dataset": rec.store.name,
        "run_name": str(rec.run.record.get("run_name", rec.run.run_dir.name)),
        "checkpoint": str(rec.run.checkpoint_path),
        "files": dict(artifact.FILES),
    }
    with atomic_directory(out) as tmp:
        files = artifact.FILES
        torch.jit.save(traced, str(tmp / files["query_encoder"]))
        embeddings = rec.item_embeddings.detach().cpu().numpy().astype(np.float32)
        np.save(tmp / files["item_embeddings"], embeddings, allow_pickle=False)
        np.save(tmp / files["item_ids"], rec.items.codes.astype(np.int64), allow_pickle=False)
        items = {"ids": rec.items.originals(), "titles": titles}
        (tmp / files["items"]).write_text(json.dumps(items), encoding="utf-8")
        shutil.copyfile(artifact.__file__, tmp / files["loader"])
        # The manifest last: its presence marks a complete artefact.
        (tmp / files["manifest"]).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out

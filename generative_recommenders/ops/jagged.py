"""Jagged-tensor helpers: the project's only caller of ``torch.ops.fbgemm``.

Every function has a pure-PyTorch twin in :mod:`generative_recommenders.ops.reference` with the
same signature; tests compare values and gradients. When fbgemm_gpu cannot be imported, the twins
are used (with one warning), so the package still runs everywhere PyTorch does. fbgemm's CPU
kernels have no float64 versions, so float64 tensors also take the twins.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from generative_recommenders.ops import reference

_LOG = logging.getLogger(__name__)

try:  # fbgemm_gpu registers torch.ops.fbgemm.* on import.
    import fbgemm_gpu  # noqa: F401

    HAS_FBGEMM = True
except Exception as error:  # pragma: no cover - depends on the platform's wheel
    HAS_FBGEMM = False
    _LOG.warning("fbgemm_gpu unavailable (%s); using pure-PyTorch jagged ops", error)

valid_mask = reference.valid_mask
_reference_only = False


@contextmanager
def reference_ops() -> Iterator[None]:
    """Inside the block, use the pure-PyTorch twins (plain ATen ops), e.g. while tracing a model
    for export: a traced program then needs no fbgemm at load time."""
    global _reference_only
    saved, _reference_only = _reference_only, True
    try:
        yield
    finally:
        _reference_only = saved


def _use_fbgemm(values: torch.Tensor) -> bool:
    # fbgemm's CPU kernels have no float64 version.
    return HAS_FBGEMM and not _reference_only and values.dtype != torch.float64


def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """[B] lengths -> [B + 1] int64 offsets starting at 0."""
    if not HAS_FBGEMM or _reference_only:
        return reference.lengths_to_offsets(lengths)
    return torch.ops.fbgemm.asynchronous_complete_cumsum(lengths.to(torch.int64))


def dense_to_jagged(dense: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[B, N, D] padded -> [sum(lengths), D] jagged values (differentiable)."""
    if not _use_fbgemm(dense):
        return reference.dense_to_jagged(dense, offsets)
    total = offsets[-1].item()
    return torch.ops.fbgemm.dense_to_jagged(dense, [offsets], total_L=int(total))[0]


def jagged_to_dense(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, padding_value: float = 0.0
) -> torch.Tensor:
    """[sum(lengths), D] -> [B, max_len, D] with ``padding_value`` after each length (differentiable).

    Sequences longer than ``max_len`` are truncated to their first ``max_len`` rows.
    """
    if not _use_fbgemm(values):
        return reference.jagged_to_dense(values, offsets, max_len, padding_value)
    return torch.ops.fbgemm.jagged_to_padded_dense(values, [offsets], [max_len], padding_value)

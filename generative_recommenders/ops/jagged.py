"""Jagged-tensor helpers: the project's only caller of ``torch.ops.fbgemm``.

Every function has a pure-PyTorch twin in :mod:`generative_recommenders.ops.reference` with the
same signature; tests compare values and gradients. When fbgemm_gpu cannot be imported, the twins
are used (with one warning), so the package still runs everywhere PyTorch does. fbgemm's CPU
kernels have no float64 versions, so float64 tensors also take the twins.
"""

from __future__ import annotations

import logging

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


def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """[B] lengths -> [B + 1] int64 offsets starting at 0."""
    if not HAS_FBGEMM:
        return reference.lengths_to_offsets(lengths)
    return torch.ops.fbgemm.asynchronous_complete_cumsum(lengths.to(torch.int64))


def dense_to_jagged(dense: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[B, N, D] padded -> [sum(lengths), D] jagged values (differentiable)."""
    if not HAS_FBGEMM or dense.dtype == torch.float64:
        return reference.dense_to_jagged(dense, offsets)
    total = offsets[-1].item()
    return torch.ops.fbgemm.dense_to_jagged(dense, [offsets], total_L=int(total))[0]


def jagged_to_dense(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, padding_value: float = 0.0
) -> torch.Tensor:
    """[sum(lengths), D] -> [B, max_len, D] with ``padding_value`` after each length (differentiable).

    Sequences longer than ``max_len`` are truncated to their first ``max_len`` rows.
    """
    if not HAS_FBGEMM or values.dtype == torch.float64:
        return reference.jagged_to_dense(values, offsets, max_len, padding_value)
    return torch.ops.fbgemm.jagged_to_padded_dense(values, [offsets], [max_len], padding_value)

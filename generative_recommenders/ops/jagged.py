"""Jagged conversions (ops ``"dense_to_jagged"``, ``"jagged_to_dense"``, ``"select_rows"``).

Jagged layout: the valid rows of B sequences stacked, ``values[offsets[b]:offsets[b+1]]`` is
sequence b. The references are in :mod:`generative_recommenders.ops.reference` (plain indexing);
backends:

- ``fbgemm`` (CPU): fbgemm_gpu's ``dense_to_jagged`` / ``jagged_to_padded_dense``, the project's
  only caller of ``torch.ops.fbgemm``. Registered (and picked by "auto") when fbgemm_gpu imports:
  forward + backward at the ML-1M training shape it was 2x (dense -> jagged) and 4.5x
  (jagged -> dense) faster than the reference on this CPU (``benchmarks/bench_jagged.py``).
  fbgemm's CPU kernels have no float64 version, so float64 inputs take the reference.
- ``fused`` (CPU) for ``select_rows``: reads the rows from the contiguous tensor a slice views
  (no copy of the slice; one zero gradient in backward instead of two).
"""

from __future__ import annotations

import logging

import torch

from generative_recommenders.ops import kernels, reference

_LOG = logging.getLogger(__name__)

try:  # fbgemm_gpu registers torch.ops.fbgemm.* on import.
    import fbgemm_gpu  # noqa: F401

    HAS_FBGEMM = True
except Exception as error:  # pragma: no cover - depends on the platform's wheel
    HAS_FBGEMM = False
    _LOG.warning("fbgemm_gpu unavailable (%s); using pure-PyTorch jagged ops", error)

DENSE_TO_JAGGED, JAGGED_TO_DENSE, SELECT_ROWS = "dense_to_jagged", "jagged_to_dense", "select_rows"
valid_mask = reference.valid_mask
lengths_to_offsets = reference.lengths_to_offsets


def _dense_to_jagged_fbgemm(dense: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    if dense.dtype == torch.float64:
        return reference.dense_to_jagged(dense, offsets)
    total = int(offsets[-1].item())
    return torch.ops.fbgemm.dense_to_jagged(dense, [offsets], total_L=total)[0]


def _jagged_to_dense_fbgemm(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, padding_value: float = 0.0
) -> torch.Tensor:
    if values.dtype == torch.float64:
        return reference.jagged_to_dense(values, offsets, max_len, padding_value)
    return torch.ops.fbgemm.jagged_to_padded_dense(values, [offsets], [max_len], padding_value)


def _select_rows_fused(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """When x is a slice along dim 1 of a contiguous [B, M, D] tensor (the model passes
    ``outputs[:, :-1]`` and ``embeddings[:, 1:]``), the rows are read from that tensor."""
    base, (B, N, D) = x._base, x.shape
    if (
        base is not None
        and base.dim() == 3
        and base.is_contiguous()
        and x.stride() == base.stride()
        and (base.shape[0], base.shape[2]) == (B, D)
    ):
        start = (x.storage_offset() - base.storage_offset()) // D  # first index along dim 1
        base_rows = rows + torch.div(rows, N, rounding_mode="floor") * (base.shape[1] - N) + start
        return base.view(-1, D).index_select(0, base_rows)
    return reference.select_rows(x, rows)


kernels.define(DENSE_TO_JAGGED, reference.dense_to_jagged)
kernels.define(JAGGED_TO_DENSE, reference.jagged_to_dense)
kernels.define(SELECT_ROWS, reference.select_rows)
kernels.register(SELECT_ROWS, "fused", _select_rows_fused, devices=("cpu",))
if HAS_FBGEMM:
    kernels.register(DENSE_TO_JAGGED, "fbgemm", _dense_to_jagged_fbgemm)
    kernels.register(JAGGED_TO_DENSE, "fbgemm", _jagged_to_dense_fbgemm)


def dense_to_jagged(dense: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[B, N, D] padded, offsets [B + 1] -> [sum(lengths), D] jagged values (differentiable)."""
    return kernels.resolve(DENSE_TO_JAGGED, dense.device)(dense, offsets)


def jagged_to_dense(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, padding_value: float = 0.0
) -> torch.Tensor:
    """[sum(lengths), D] -> [B, max_len, D] with ``padding_value`` after each length
    (differentiable). Sequences longer than ``max_len`` are truncated to their first rows."""
    return kernels.resolve(JAGGED_TO_DENSE, values.device)(values, offsets, max_len, padding_value)


def select_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], rows [L] flat indices ``b * N + t`` -> x[b, t] as [L, D] (differentiable)."""
    return kernels.resolve(SELECT_ROWS, x.device)(x, rows)

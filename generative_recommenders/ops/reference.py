"""Reference implementations of the jagged ops of :mod:`generative_recommenders.ops.jagged`.

They define the expected results in tests and serve as the fallback when fbgemm_gpu cannot be
imported. Jagged layout: the valid rows of B sequences stacked, ``values[offsets[b]:offsets[b+1]]``
is sequence b.
"""

from __future__ import annotations

import torch


def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """[B] lengths -> [B + 1] int64 offsets starting at 0."""
    offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64, device=lengths.device)
    offsets[1:] = torch.cumsum(lengths.to(torch.int64), dim=0)
    return offsets


def valid_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B] lengths -> [B, max_len] bool, True on valid positions."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def dense_to_jagged(dense: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """[B, N, D] padded -> [sum(lengths), D] jagged values."""
    lengths = offsets[1:] - offsets[:-1]
    return dense[valid_mask(lengths, dense.shape[1])]


def jagged_to_dense(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, padding_value: float = 0.0
) -> torch.Tensor:
    """[sum(lengths), D] jagged values -> [B, max_len, D], ``padding_value`` after each length."""
    lengths = offsets[1:] - offsets[:-1]
    rows = torch.repeat_interleave(torch.arange(lengths.numel(), device=values.device), lengths)
    positions = torch.arange(values.shape[0], device=values.device) - offsets[rows]
    keep = positions < max_len
    out = values.new_full((lengths.numel(), max_len, values.shape[-1]), padding_value)
    out[rows[keep], positions[keep]] = values[keep]
    return out


def select_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], rows [L] flat indices ``b * N + t`` -> x[b, t] as [L, D]."""
    return x.reshape(-1, x.shape[-1]).index_select(0, rows)

"""HSTU's relative attention bias: bucketed time gaps plus relative positions.

For a query at position i (with "next" time t_q, see below) and a key at position j with time t_j:
``bias[i, j] = ts_w[bucket(t_q - t_j)] + pos_w[(j - i) + P - 1]``, where
``bucket(dt) = clamp(floor(log(max(|dt|, 1)) / 0.301), 0, num_buckets)`` (time in seconds, natural
log; 0.301 ~ log10(2), so buckets grow geometrically) and P is the number of positions.
Following the paper's public code, the query's time is the timestamp of the *next* position
(i + 1), with the sequence's last column repeated past the end; so the last history position sees
the query time when the caller writes it at index ``length``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from generative_recommenders.ops.scatter import scatter_add_flat
from generative_recommenders.ops.silu_attention import with_mask_slot

NUM_TIME_BUCKETS = 128
LOG_BUCKET_WIDTH = 0.301


def bucketize_time_gaps(gaps: torch.Tensor, num_buckets: int = NUM_TIME_BUCKETS) -> torch.Tensor:
    """Time gaps [*] int64 seconds -> bucket ids [*] int64 in 0..num_buckets."""
    magnitude = gaps.abs().clamp(min=1).to(torch.float32)
    return (torch.log(magnitude) / LOG_BUCKET_WIDTH).to(torch.int64).clamp(0, num_buckets)


def _bucketize_time_gaps_(gaps: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """:func:`bucketize_time_gaps` overwriting ``gaps`` (a fresh int64 tensor): fewer [B, N, N]
    temporaries, the same float32 arithmetic, so the same buckets."""
    gaps.abs_().clamp_(min=1)
    magnitude = gaps.to(torch.float32)
    magnitude.log_().div_(LOG_BUCKET_WIDTH)
    return magnitude.to(torch.int64).clamp_(0, num_buckets)


class _GatherTable(torch.autograd.Function):
    """``weights[index]`` for a small 1-D table; backward sums gradients with a scatter_add
    (autograd's accumulating index_put is several times slower on CPU for [B, N, N] indices)."""

    @staticmethod
    def forward(ctx, weights, index):  # noqa: ANN001 (autograd signature)
        ctx.save_for_backward(index)
        ctx.size = weights.shape[0]
        return weights.take(index)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001 (autograd signature)
        (index,) = ctx.saved_tensors
        return scatter_add_flat(ctx.size, index, grad), None


def gather_table(weights: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """weights [K] (differentiable), index [*] int64 in 0..K-1 -> [*] (= ``weights[index]``).

    Without autograd (evaluation, tracing for export) it is the plain ``take``."""
    if not (torch.is_grad_enabled() and weights.requires_grad):
        return weights.take(index)
    return _GatherTable.apply(weights, index.contiguous())


def next_timestamps(timestamps: torch.Tensor) -> torch.Tensor:
    """[B, N] -> [B, N]: column i holds timestamps[:, i + 1]; the last column is repeated."""
    return torch.cat([timestamps[:, 1:], timestamps[:, -1:]], dim=1)


def relative_bias_indices(
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    max_positions: int,
    query_times: torch.Tensor | None,
    key_times: torch.Tensor | None,
    num_buckets: int = NUM_TIME_BUCKETS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Table indices shared by every layer's bias.

    Args:
        query_positions: [B | 1, Nq] int64; key_positions: [B | 1, Nk] int64.
        query_times: [B, Nq] int64 "next" times of the queries, or None (no time bias).
        key_times: [B, Nk] int64 key times, or None.
    Returns:
        (position index [B | 1, Nq, Nk] into pos_w, time-bucket index [B, Nq, Nk] or None).
    """
    offset = key_positions.unsqueeze(1) - query_positions.unsqueeze(2)
    position_index = (offset + max_positions - 1).clamp(0, 2 * max_positions - 2)
    if query_times is None or key_times is None:
        return position_index, None
    gaps = query_times.unsqueeze(2) - key_times.unsqueeze(1)
    return position_index, _bucketize_time_gaps_(gaps, num_buckets)


class PackedBiasIndex(NamedTuple):
    """One index per (query, key) into the flattened outer sum ``ts_w[:, None] + pos_w[None, :]``:
    ``time_bucket * (2P - 1) + position_index`` [B, Nq, Nk]. Computed once per forward, it makes
    every layer's bias a single gather instead of two gathers and an add. With ``masked``, pairs
    the attention mask forbids point one past the table: at the mask slot of
    :func:`generative_recommenders.ops.silu_attention.with_mask_slot`."""

    index: torch.Tensor
    masked: bool = False


def pack_bias_index(
    position_index: torch.Tensor,
    time_bucket: torch.Tensor,
    max_positions: int,
    allowed: torch.Tensor | None = None,
    num_buckets: int = NUM_TIME_BUCKETS,
) -> PackedBiasIndex:
    """(position index [B | 1, Nq, Nk], time bucket [B, Nq, Nk]) -> :class:`PackedBiasIndex`;
    with ``allowed`` [B | 1, Nq, Nk] bool, the forbidden pairs point at the mask slot."""
    num_positions = 2 * max_positions - 1
    index = time_bucket * num_positions
    if allowed is None:
        return PackedBiasIndex(index.add_(position_index))
    # Forbidden pairs get the mask slot as their position part ([1, Nq, Nk] for the encoder's
    # causal mask: cheap), so their sum is >= the slot and one clamp maps them onto it; allowed
    # sums stay below it (at most (num_buckets + 1) * num_positions - 1). No pass of the slow
    # masked_fill_ over [B, Nq, Nk].
    mask_slot = (num_buckets + 1) * num_positions
    positions = torch.where(allowed, position_index, mask_slot)
    return PackedBiasIndex(index.add_(positions).clamp_(max=mask_slot), masked=True)


class RelativeBucketedTimeAndPositionBias(nn.Module):
    """Parameters: ts_w [num_buckets + 1] and pos_w [2 * max_positions - 1], normal(0, 0.02)."""

    def __init__(self, max_positions: int, num_buckets: int = NUM_TIME_BUCKETS) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.num_buckets = num_buckets
        self.ts_w = nn.Parameter(torch.empty(num_buckets + 1).normal_(0.0, 0.02))
        self.pos_w = nn.Parameter(torch.empty(2 * max_positions - 1).normal_(0.0, 0.02))

    def forward(
        self, position_index: torch.Tensor, time_bucket: torch.Tensor | None
    ) -> torch.Tensor:
        """Indices from :func:`relative_bias_indices` -> bias [B | 1, Nq, Nk]."""
        bias = gather_table(self.pos_w, position_index)
        if time_bucket is not None:
            bias = gather_table(self.ts_w, time_bucket) + bias
        return bias

    def packed_table(self, masked: bool = False) -> torch.Tensor:
        """The flattened outer sum [(num_buckets + 1) (2P - 1)] (+ the mask slot when masked)."""
        table = (self.ts_w.unsqueeze(1) + self.pos_w.unsqueeze(0)).reshape(-1)
        return with_mask_slot(table) if masked else table

    def packed(self, packed: PackedBiasIndex, table: torch.Tensor | None = None) -> torch.Tensor:
        """Bias [B, Nq, Nk] from a :class:`PackedBiasIndex` (equals ``forward`` on its parts;
        masked pairs get :data:`~generative_recommenders.ops.silu_attention.MASK_BIAS`).
        ``table``: this module's :meth:`packed_table` when the caller already has it."""
        if table is None:
            table = self.packed_table(packed.masked)
        return gather_table(table, packed.index)

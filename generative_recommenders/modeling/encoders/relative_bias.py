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

import torch
from torch import nn

from generative_recommenders.ops.hstu_attention import BiasWeights, RelativeIndex, bias_weights

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
) -> RelativeIndex:
    """Table indices shared by every layer's bias.

    Args:
        query_positions: [B | 1, Nq] int64; key_positions: [B | 1, Nk] int64.
        query_times: [B, Nq] int64 "next" times of the queries, or None (no time bias).
        key_times: [B, Nk] int64 key times, or None.
    Returns:
        RelativeIndex(position [B | 1, Nq, Nk] into pos_w, time bucket [B, Nq, Nk] or None).
    """
    offset = key_positions.unsqueeze(1) - query_positions.unsqueeze(2)
    position_index = (offset + max_positions - 1).clamp(0, 2 * max_positions - 2)
    if query_times is None or key_times is None:
        return RelativeIndex(position_index, None)
    gaps = query_times.unsqueeze(2) - key_times.unsqueeze(1)
    return RelativeIndex(position_index, _bucketize_time_gaps_(gaps, num_buckets))


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
        """Indices from :func:`relative_bias_indices` -> bias [B | 1, Nq, Nk] (the formula; the
        attention op gathers it itself, from :meth:`weights`)."""
        bias = self.pos_w[position_index]
        if time_bucket is not None:
            bias = bias + self.ts_w[time_bucket]
        return bias

    def weights(self) -> BiasWeights:
        """pos_w and ts_w as the attention op in use wants them (make once per forward)."""
        return bias_weights(self.pos_w, self.ts_w)

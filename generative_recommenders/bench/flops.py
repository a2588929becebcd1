"""Useful FLOPs of one training step: valid tokens only, causal attention as half the square."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def _hstu_block_flops(block: nn.Module, lengths: Sequence[int]) -> float:
    d, h, dqk, dv = block.embedding_dim, block.num_heads, block.dqk, block.dv
    tokens = sum(lengths)
    o_in = h * dv * (3 if block.concat_ua else 1)
    linear = 2.0 * tokens * (d * h * (2 * dv + 2 * dqk) + o_in * d)
    attention = sum(float(n) * n for n in lengths) * h * (dqk + dv)  # 2 * n^2 / 2 per matmul
    return linear + attention


def _sasrec_block_flops(block: nn.Module, dim: int, lengths: Sequence[int]) -> float:
    ffn_hidden = block.ffn[0].out_features
    tokens = sum(lengths)
    linear = 2.0 * tokens * (4 * dim * dim + 2 * dim * ffn_hidden)
    attention = sum(float(n) * n for n in lengths) * 2 * dim
    return linear + attention


def encoder_forward_flops(encoder: nn.Module, lengths: Sequence[int]) -> float:
    """Forward FLOPs of the encoder's blocks over users of the given valid lengths.

    An encoder of one's own reports its count with a ``forward_flops(lengths)`` method (it is
    never taken for SASRec just because it lacks HSTU's ``dqk``).
    """
    if hasattr(encoder, "forward_flops"):
        return float(encoder.forward_flops(lengths))
    if hasattr(encoder, "dqk"):  # HSTU
        return sum(_hstu_block_flops(b, lengths) for b in encoder.blocks)
    if hasattr(encoder, "ffn_hidden_dim"):  # SASRec
        return sum(_sasrec_block_flops(b, encoder.embedding_dim, lengths) for b in encoder.blocks)
    raise ValueError(
        f"no FLOPs count for {type(encoder).__name__}: give it a forward_flops(lengths) method"
    )


def train_step_flops(
    encoder: nn.Module, lengths: Sequence[int], num_negatives: int, dim: int
) -> float:
    """Forward + backward (3x forward) of encoder and sampled-softmax scoring (1 + R per position).

    ``lengths`` are the encoder's valid tokens per user (history + the supervised target slot is
    not a token); every valid position is scored against its positive and R negatives.
    """
    positions = sum(lengths)
    scoring = 2.0 * positions * (1 + num_negatives) * dim
    return 3.0 * (encoder_forward_flops(encoder, lengths) + scoring)

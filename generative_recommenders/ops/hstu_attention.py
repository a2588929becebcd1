"""HSTU's pointwise attention with a relative bias (op ``"hstu_attention"``).

``hstu_attention(q, k, v, mask, bias, index, ...)``, per head h, with
``s[b, h, i, j] = <q[b, i, h], k[b, j, h]> + rab[b, i, j]``:

    "rel_bias":          A[b, h, i, j] = SiLU(s) / n                 where allowed, else 0
    "softmax_rel_bias":  A[b, h, i, j] = softmax_j(s / sqrt(dqk))    (disallowed j at -inf)
    out[b, i, h] = sum_j dropout(A)[b, h, i, j] v[b, j, h]

and the relative bias ``rab[b, i, j] = pos_w[position[b, i, j]] + ts_w[time[b, i, j]]`` (the time
term only with time buckets; no bias at all without ``bias``). ``n`` is a constant (HSTU uses
``max_sequence_len + max_output_len``). The mask is an
:class:`~generative_recommenders.ops.attention.AttentionMask`.

- reference: the formula above (einsum, gathers, ``where``, divide, einsum).
- ``fused`` (CPU): with "rel_bias", time buckets and no attention dropout in effect, the fused
  SiLU attention of :mod:`generative_recommenders.ops.silu_attention`: the bias tables packed
  into one outer-sum table (:func:`bias_weights`, once per layer and forward) and the mask carried
  inside a packed index (derived once per mask); otherwise batched matmuls over [B, H] with the
  bias added inside the first one (``baddbmm``) and the mask applied as one multiply by
  ``allowed / n``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from generative_recommenders.ops import kernels
from generative_recommenders.ops.attention import AttentionMask
from generative_recommenders.ops.dropout import dropout
from generative_recommenders.ops.scatter import scatter_add_flat
from generative_recommenders.ops.silu_attention import silu_attention, with_mask_slot

OP = "hstu_attention"
NORMALIZATIONS = ("rel_bias", "softmax_rel_bias")


class BiasWeights(NamedTuple):
    """A layer's relative-bias parameters pos_w [P'] and ts_w [T'] (None: no time bias), with
    ``packed``: a backend's table derived from them by :func:`bias_weights`, or None."""

    pos_w: torch.Tensor
    ts_w: torch.Tensor | None
    packed: torch.Tensor | None = None


class RelativeIndex(NamedTuple):
    """Per (query, key): position [B | 1, Nq, Nk] int64 into pos_w and time [B, Nq, Nk] int64
    into ts_w (None: no time bias)."""

    position: torch.Tensor
    time: torch.Tensor | None


def hstu_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    bias: BiasWeights | None,
    index: RelativeIndex | None,
    num_heads: int,
    normalization: str,
    normalizer: float,
    dropout_p: float,
    training: bool,
) -> torch.Tensor:
    """The formula of the module doc."""
    B, Nq, width_qk = q.shape
    Nk, H = k.shape[1], num_heads
    dqk, dv = width_qk // H, v.shape[-1] // H
    scores = torch.einsum("bnhd,bmhd->bhnm", q.view(B, Nq, H, dqk), k.view(B, Nk, H, dqk))
    if bias is not None and index is not None:
        rab = bias.pos_w[index.position]
        if index.time is not None:
            rab = rab + bias.ts_w[index.time]
        scores = scores + rab.unsqueeze(1)
    allowed = mask.allowed.unsqueeze(1)
    if normalization == "rel_bias":
        weights = torch.where(allowed, F.silu(scores), 0.0) / normalizer
    else:
        scores = scores / math.sqrt(dqk)
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
    weights = dropout(weights, dropout_p, training)
    out = torch.einsum("bhnm,bmhd->bnhd", weights, v.view(B, Nk, H, dv))
    return out.reshape(B, Nq, H * dv)


def _prepare_reference(pos_w: torch.Tensor, ts_w: torch.Tensor | None) -> BiasWeights:
    return BiasWeights(pos_w, ts_w)


# ---- the fused CPU backend ----


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


def _packed_table(pos_w: torch.Tensor, ts_w: torch.Tensor) -> torch.Tensor:
    """The flattened outer sum ``ts_w[:, None] + pos_w[None, :]`` [T' P'] plus the mask slot."""
    return with_mask_slot((ts_w.unsqueeze(1) + pos_w.unsqueeze(0)).reshape(-1))


def _prepare_fused(pos_w: torch.Tensor, ts_w: torch.Tensor | None) -> BiasWeights:
    return BiasWeights(pos_w, ts_w, None if ts_w is None else _packed_table(pos_w, ts_w))


def _packed_index(index: RelativeIndex, mask: AttentionMask, num_positions: int, num_times: int):
    """One index per (query, key) into :func:`_packed_table`: ``time * P' + position``, and the
    mask slot (``T' P'``) where the mask forbids the pair. Derived once per (mask, index)."""

    def make() -> tuple[RelativeIndex, torch.Tensor]:
        # Forbidden pairs get the mask slot as their position part ([1, Nq, Nk] for the causal
        # mask: cheap), so their sum is >= the slot and one clamp maps them onto it; allowed sums
        # stay below it. No pass of the slow masked_fill_ over [B, Nq, Nk].
        mask_slot = num_times * num_positions
        positions = torch.where(mask.allowed, index.position, mask_slot)
        packed = index.time * num_positions
        return index, packed.add_(positions).clamp_(max=mask_slot)

    # The entry keeps ``index`` alive, so its id names it for as long as the entry exists.
    _, packed = mask.derived(("hstu_packed", id(index)), make)
    return packed


def _hstu_attention_fused(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    bias: BiasWeights | None,
    index: RelativeIndex | None,
    num_heads: int,
    normalization: str,
    normalizer: float,
    dropout_p: float,
    training: bool,
) -> torch.Tensor:
    B, Nq, width_qk = q.shape
    Nk, H = k.shape[1], num_heads
    dqk, dv = width_qk // H, v.shape[-1] // H
    timed = bias is not None and index is not None and index.time is not None
    packed_index = None
    if timed:
        packed_index = _packed_index(index, mask, bias.pos_w.shape[0], bias.ts_w.shape[0])
        table = bias.packed if bias.packed is not None else _packed_table(bias.pos_w, bias.ts_w)
        if normalization == "rel_bias" and not (training and dropout_p > 0.0):
            return silu_attention(q, k, v, table, packed_index, H, normalizer)
    no_grad = not torch.is_grad_enabled()
    rab = None
    if timed:
        rab = gather_table(table, packed_index)  # [B, Nq, Nk]
    elif bias is not None and index is not None:
        rab = gather_table(bias.pos_w, index.position)  # [B | 1, Nq, Nk]
    if H == 1:  # no head transposes: every operand is a view
        kt = k.transpose(1, 2)
        if rab is None:
            scores = torch.bmm(q, kt)
        else:
            scores = torch.baddbmm(rab.expand(B, Nq, Nk), q, kt)
        scores = scores.unsqueeze(1)  # [B, 1, Nq, Nk]
    else:
        q4 = q.view(B, Nq, H, dqk).transpose(1, 2)
        k4 = k.view(B, Nk, H, dqk).permute(0, 2, 3, 1)
        scores = torch.matmul(q4, k4)  # [B, H, Nq, Nk]
        if rab is not None:
            scores = scores.add_(rab.unsqueeze(1)) if no_grad else scores + rab.unsqueeze(1)
    allowed = mask.allowed
    if normalization == "rel_bias":
        scale = allowed.to(scores.dtype) * (1.0 / normalizer)
        if no_grad:  # evaluation: the same arithmetic without [B, H, N, N] temporaries
            weights = F.silu(scores, inplace=True).mul_(scale.unsqueeze(1))
        else:
            weights = F.silu(scores) * scale.unsqueeze(1)
    else:
        scores = scores * (1.0 / math.sqrt(dqk))
        weights = torch.softmax(scores.masked_fill(~allowed.unsqueeze(1), float("-inf")), -1)
    weights = dropout(weights, dropout_p, training)
    if H == 1:
        return torch.bmm(weights.squeeze(1), v)
    out = torch.matmul(weights, v.view(B, Nk, H, dv).transpose(1, 2))  # [B, H, Nq, dv]
    return out.transpose(1, 2).reshape(B, Nq, H * dv)


kernels.define(OP, hstu_attention_reference)
kernels.register(OP, "fused", _hstu_attention_fused, devices=("cpu",))
_PREPARE = {hstu_attention_reference: _prepare_reference, _hstu_attention_fused: _prepare_fused}


def bias_weights(pos_w: torch.Tensor, ts_w: torch.Tensor | None) -> BiasWeights:
    """A layer's bias parameters as the implementation in use wants them; make them once per
    layer and forward (outside activation checkpointing) and pass them to every call."""
    return _PREPARE.get(kernels.resolve(OP, pos_w.device), _prepare_reference)(pos_w, ts_w)


def hstu_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    bias: BiasWeights | None,
    index: RelativeIndex | None,
    num_heads: int,
    normalization: str,
    normalizer: float,
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """q, k [B, N, H dqk], v [B, Nk, H dv], mask [B | 1, Nq, Nk] -> [B, Nq, H dv] (see the
    module doc; ``bias`` from :func:`bias_weights`, None for no relative bias)."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r}; expected one of {NORMALIZATIONS}")
    impl = kernels.resolve(OP, q.device)
    return impl(
        q, k, v, mask, bias, index, num_heads, normalization, normalizer, dropout_p, training
    )

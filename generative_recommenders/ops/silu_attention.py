"""HSTU's pointwise (SiLU) attention with a gathered bias, as one autograd function.

``silu_attention(q, k, v, table, index, normalizer)`` computes, per head h,

    out[b, i, h] = sum_j SiLU(<q[b, i, h], k[b, j, h]> + table[index[b, i, j]]) v[b, j, h] / n

where the causal (or any other) mask is carried by ``index`` itself: masked (query, key) pairs
point at :data:`MASK_BIAS`, a bias so negative that SiLU of the score is exactly 0 in fp32, bf16
and fp16 and so is its derivative. So there is no separate mask tensor and no multiply pass
over the [b, H, N, N] scores, ``1 / n`` scales the small [b, N, dv] operands instead of the
square, the bias is gathered straight into the buffer the first matmul accumulates into, and
only two [b, H, N, N] tensors are saved for backward (scores and weights; autograd's chain of
ops saved three), each freed as soon as backward has used it. It is the core of the ``fused``
backend of :func:`generative_recommenders.ops.hstu_attention.hstu_attention`, whose reference it
equals (tested, values and gradients).

Exactness of the mask: for a masked pair the score is ``<q, k> + MASK_BIAS``; as long as
``<q, k> + real bias < 30,000`` (scores of a trained HSTU are O(10)), the score is below -88 (or
-11 in fp16), ``exp(-score)`` overflows, the sigmoid is 0, and both SiLU and its derivative are
exactly (signed) zero.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generative_recommenders.ops.scatter import scatter_add_flat

MASK_BIAS = -60_000.0  # finite in fp16 (max 65,504); exp(60,000) overflows in every float type


def with_mask_slot(table: torch.Tensor) -> torch.Tensor:
    """table [K] -> [K + 1] with :data:`MASK_BIAS` at index K (the masked pairs' slot)."""
    return torch.cat([table, table.new_full((1,), MASK_BIAS)])


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[b, N, H e] -> [b H, N, e] (a view when H == 1)."""
    b, n, width = x.shape
    if num_heads == 1:
        return x
    e = width // num_heads
    return x.reshape(b, n, num_heads, e).transpose(1, 2).reshape(b * num_heads, n, e)


def _merge_heads(x: torch.Tensor, b: int, num_heads: int) -> torch.Tensor:
    """[b H, N, e] -> [b, N, H e]."""
    if num_heads == 1:
        return x
    _, n, e = x.shape
    return x.reshape(b, num_heads, n, e).transpose(1, 2).reshape(b, n, num_heads * e)


class _SiluAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, table, index, num_heads: int, normalizer: float):  # noqa: ANN001
        b, nq, _ = q.shape
        qh, kh = _heads(q, num_heads), _heads(k, num_heads)  # [bH, Nq, e], [bH, Nk, e]
        vh = _heads(v, num_heads) * (1.0 / normalizer)  # [bH, Nk, dv]
        bias = table.index_select(0, index.view(-1)).view(index.shape)  # [b, Nq, Nk]
        if num_heads == 1:
            scores = bias.baddbmm_(qh, kh.transpose(1, 2))
        else:
            scores = torch.bmm(qh, kh.transpose(1, 2)).view(b, num_heads, nq, -1)
            scores = scores.add_(bias.unsqueeze(1)).view(b * num_heads, nq, -1)
        if isinstance(ctx, _NoContext):  # nothing is kept for backward: in place
            weights = F.silu(scores, inplace=True)
        else:
            weights = F.silu(scores)  # [bH, Nq, Nk]
        out = torch.bmm(weights, vh)  # [bH, Nq, dv]
        ctx.save_for_backward(qh, kh, vh, index, scores, weights)
        ctx.shape = (b, num_heads, table.shape[0], normalizer)
        return _merge_heads(out, b, num_heads)

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001 (autograd signature)
        qh, kh, vh, index, scores, weights = ctx.saved_tensors
        b, num_heads, table_size, normalizer = ctx.shape
        g = _heads(grad_out, num_heads)  # [bH, Nq, dv]
        grad_v = torch.bmm(weights.transpose(1, 2), g).mul_(1.0 / normalizer)
        del weights
        grad_w = torch.bmm(g, vh.transpose(1, 2))  # [bH, Nq, Nk]
        grad_s = torch.ops.aten.silu_backward(grad_w, scores)
        del grad_w, scores
        grad_q = torch.bmm(grad_s, kh)
        grad_k = torch.bmm(grad_s.transpose(1, 2), qh)
        grad_bias = (
            grad_s if num_heads == 1 else grad_s.view(b, num_heads, *grad_s.shape[1:]).sum(1)
        )
        grad_table = scatter_add_flat(table_size, index, grad_bias)
        return (
            _merge_heads(grad_q, b, num_heads),
            _merge_heads(grad_k, b, num_heads),
            _merge_heads(grad_v, b, num_heads),
            grad_table,
            None,
            None,
            None,
        )


def silu_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    table: torch.Tensor,
    index: torch.Tensor,
    num_heads: int,
    normalizer: float,
) -> torch.Tensor:
    """q, k [b, N, H dqk], v [b, N, H dv], table [K] (with :func:`with_mask_slot`), index
    [b, Nq, Nk] int64 into it (masked pairs at the slot) -> [b, Nq, H dv].

    Differentiable in q, k, v and table. Without autograd the same kernels run (no state kept).
    """
    index = index.expand(q.shape[0], -1, -1).contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, table)):
        return _SiluAttention.apply(q, k, v, table, index, int(num_heads), float(normalizer))
    with torch.no_grad():
        return _SiluAttention.forward(_NoContext(), q, k, v, table, index, num_heads, normalizer)


class _NoContext:
    """Stands in for autograd's ctx when forward runs without autograd (nothing is saved)."""

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        del tensors

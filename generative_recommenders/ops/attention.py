"""The attention mask, and softmax attention (op ``"softmax_attention"``, SASRec's attention).

:class:`AttentionMask` is the one mask representation: ``allowed [B | 1, Nq, Nk]`` bool, True
where query i may attend to key j. Backends derive their own forms from it (an additive 0/-inf
bias, a mask slot inside a packed bias index) once per mask, through :meth:`AttentionMask.derived`
(no gradient flows through a mask, so caching them is safe under activation checkpointing).

``softmax_attention(q, k, v, mask, num_heads, dropout_p, training)``, per head h:

    out[b, i, h] = sum_j dropout(softmax_j(<q[b, i, h], k[b, j, h]> masked to -inf))[j] v[b, j, h]

with q already scaled by 1 / sqrt(head dim) (as the projection in ``nn.MultiheadAttention``).

- reference: einsum, ``masked_fill(-inf)``, softmax, dropout, einsum;
- ``fused`` (CPU): heads folded into the batch; the mask added inside the scores' GEMM
  (``baddbmm`` with a 0/-inf bias: exactly ``masked_fill`` with -inf, as x + 0 = x and
  x + -inf = -inf, without another pass over [B, H, N, N]).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from generative_recommenders.ops import kernels
from generative_recommenders.ops.dropout import dropout

OP = "softmax_attention"


class AttentionMask:
    """allowed [B | 1, Nq, Nk] bool: True where query i may attend to key j."""

    def __init__(self, allowed: torch.Tensor) -> None:
        if allowed.dtype != torch.bool or allowed.dim() != 3:
            raise ValueError("AttentionMask: allowed must be a [B | 1, Nq, Nk] bool tensor")
        self.allowed = allowed
        self.is_causal = False  # set by :meth:`causal` (lets backends build forms directly)
        self._derived: dict[Any, Any] = {}

    @classmethod
    def causal(cls, width: int, device: torch.device | str) -> AttentionMask:
        """[1, width, width]: position i attends to positions 0..i."""
        mask = cls(torch.ones(width, width, dtype=torch.bool, device=device).tril().unsqueeze(0))
        mask.is_causal = True
        return mask

    def derived(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()`` on the first call with ``key``, the same object afterwards."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    def additive(self, dtype: torch.dtype) -> torch.Tensor:
        """[B | 1, Nq, Nk]: 0 where allowed, -inf elsewhere."""
        allowed = self.allowed

        def make() -> torch.Tensor:
            if self.is_causal:  # -inf strictly above the diagonal: one fill and one triu
                return torch.full(
                    allowed.shape, -torch.inf, dtype=dtype, device=allowed.device
                ).triu_(1)
            zeros = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
            return zeros.masked_fill_(allowed.logical_not(), -torch.inf)

        return self.derived(("additive", dtype), make)


def softmax_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    num_heads: int,
    dropout_p: float,
    training: bool,
) -> torch.Tensor:
    """The formula of the module doc, one einsum per product."""
    B, Nq, width = q.shape
    Nk, d = k.shape[1], width // num_heads
    scores = torch.einsum(
        "bnhd,bmhd->bhnm", q.view(B, Nq, num_heads, d), k.view(B, Nk, num_heads, d)
    )
    scores = scores.masked_fill(~mask.allowed.unsqueeze(1), float("-inf"))
    weights = dropout(torch.softmax(scores, dim=-1), dropout_p, training)
    out = torch.einsum("bhnm,bmhd->bnhd", weights, v.view(B, Nk, num_heads, d))
    return out.reshape(B, Nq, width)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, N, H d] -> [B H, N, d] (x itself when H == 1)."""
    if num_heads == 1:
        return x
    B, N, width = x.shape
    d = width // num_heads
    return x.view(B, N, num_heads, d).transpose(1, 2).reshape(B * num_heads, N, d)


def _softmax_attention_fused(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    num_heads: int,
    dropout_p: float,
    training: bool,
) -> torch.Tensor:
    B, Nq, width = q.shape
    Nk = k.shape[1]
    qh, kh, vh = _heads(q, num_heads), _heads(k, num_heads), _heads(v, num_heads)
    bias = mask.additive(q.dtype)  # [B | 1, Nq, Nk]
    if bias.shape[0] == 1:
        bias = bias.expand(B * num_heads, Nq, Nk)
    else:
        bias = bias.unsqueeze(1).expand(B, num_heads, Nq, Nk).reshape(B * num_heads, Nq, Nk)
    scores = torch.baddbmm(bias, qh, kh.transpose(1, 2))
    weights = dropout(torch.softmax(scores, dim=-1), dropout_p, training)
    out = torch.bmm(weights, vh)
    if num_heads > 1:
        out = out.view(B, num_heads, Nq, -1).transpose(1, 2).reshape(B, Nq, width)
    return out


kernels.define(OP, softmax_attention_reference)
kernels.register(OP, "fused", _softmax_attention_fused, devices=("cpu",))


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: AttentionMask,
    num_heads: int,
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """q [B, Nq, H d] (scaled by 1 / sqrt(d)), k, v [B, Nk, H d], mask -> [B, Nq, H d]."""
    impl = kernels.resolve(OP, q.device)
    return impl(q, k, v, mask, num_heads, dropout_p, training)

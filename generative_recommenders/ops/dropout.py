"""Dropout with a cheaper random mask on CPU.

``torch.bernoulli_`` (behind ``nn.Dropout``) draws one Mersenne-Twister number per element; on a
2-core CPU it was a fifth of SASRec's step. Here one 64-bit draw yields three 16-bit uniforms, so
an element is kept when its 16-bit number is at or above ``round(p * 65536)``: the drop probability
is ``p`` rounded to a multiple of 2^-16 (0.2 -> 0.199997), and kept values are scaled by the exact
``1 / (1 - p_effective)`` so the expectation is preserved. On CUDA, and for p in {0, 1}, it defers
to ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16


def keep_mask(shape: torch.Size, p: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """(bool mask of ``shape``, True with probability 1 - p_eff; the scale 1 / (1 - p_eff))."""
    threshold = round(p * _LEVELS)
    numel = 1
    for size in shape:
        numel *= size
    draws = torch.empty((numel + 2) // 3, dtype=torch.int64, device=device).random_()
    # int64 random_ fills [0, 2^63): the top 16 bits are not uniform, the lower three words are.
    words = draws.view(torch.int16).view(-1, 4)[:, :3]
    keep = words >= threshold - (_LEVELS >> 1)  # signed int16: P(word >= t - 2^15) = 1 - t / 2^16
    mask = keep.reshape(-1)[:numel].view(shape)
    return mask, _LEVELS / (_LEVELS - threshold)


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mask, scale: float):  # noqa: ANN001 (autograd signature)
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.mul(x, mask).mul_(scale)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001 (autograd signature)
        (mask,) = ctx.saved_tensors
        return torch.mul(grad, mask).mul_(ctx.scale), None, None


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Like ``F.dropout(x, p, training)`` (see the module doc for the 2^-16 rounding of p)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0 or round(p * _LEVELS) == 0:
        return F.dropout(x, p, training)
    mask, scale = keep_mask(x.shape, p, x.device)
    return _MaskedScale.apply(x, mask, scale)


class Dropout(nn.Dropout):
    """Drop-in ``nn.Dropout`` using :func:`dropout` (no parameters, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

"""Length groups: users sorted by length and cut into groups, each run padded to its own width.

Ops ``"to_groups"`` (x [B, N, ...] -> the groups' [b, w, ...]) and ``"ungroup"`` (the inverse,
into one zero [B, width, ...]). A valid position only attends to earlier, valid ones, so running
each group padded to its own longest length is exact, and attention costs about sum(length^2)
instead of B * N^2.

- reference: plain ``index_select`` per group and ``index_copy`` into zeros; autograd derives the
  backward (one full-size gradient per group, added up).
- ``fused`` (CPU): the same forward inside one autograd function whose backward writes every
  group's gradient into one zero tensor. Bit-identical to the reference (the reference only adds
  exact zeros).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from generative_recommenders.ops import kernels

TO_GROUPS, UNGROUP = "to_groups", "ungroup"
Bounds = list[tuple[int, int, int]]  # (start, end, width) per group, in sorted order


class LengthGroups(NamedTuple):
    """Users sorted by length, longest first (stable), cut into attention groups.

    order [B] int64 (on the lengths' device): sorted position -> batch row; lengths [B] (host):
    the sorted lengths; bounds: (start, end, width) per group, width = the group's longest length
    (at least 1).
    """

    order: torch.Tensor
    lengths: torch.Tensor
    bounds: Bounds


def check_group_size(group_size: int) -> int:
    """``attention_group_size`` as an int, or a ValueError when it is below 1."""
    if group_size < 1:
        raise ValueError(f"attention_group_size must be >= 1, got {group_size}")
    return int(group_size)


def length_groups(lengths: torch.Tensor, group_size: int) -> LengthGroups:
    """lengths [B] (any device) -> :class:`LengthGroups` of at most ``group_size`` users."""
    host_lengths = lengths.cpu()
    order = torch.argsort(host_lengths, descending=True, stable=True)
    sorted_lengths = host_lengths[order]
    total = sorted_lengths.shape[0]
    bounds = [
        (start, min(start + group_size, total), max(int(sorted_lengths[start]), 1))
        for start in range(0, total, group_size)
    ]
    return LengthGroups(order.to(lengths.device), sorted_lengths, bounds)


def _group_rows(x: torch.Tensor, order: torch.Tensor, bounds: Bounds) -> tuple[torch.Tensor, ...]:
    """x [B, N, ...] -> x[order[start:end], :width] per group, each contiguous."""
    return tuple(x[:, :width].index_select(0, order[start:end]) for start, end, width in bounds)


def to_groups_reference(x: torch.Tensor, order: torch.Tensor, bounds: Bounds) -> list[torch.Tensor]:
    """``x[order[start:end], :width]`` per group."""
    return list(_group_rows(x, order, bounds))


def ungroup_reference(outputs: list[torch.Tensor], order: torch.Tensor, width: int) -> torch.Tensor:
    """Zeros [B, width, ...] with each group's rows (padded to ``width``) at ``order[start:end]``."""
    first = outputs[0]
    out = first.new_zeros(order.shape[0], width, *first.shape[2:])
    start = 0
    for h in outputs:
        padded = F.pad(h, (0, 0) * (h.dim() - 2) + (0, width - h.shape[1]))  # pads dim 1
        out = out.index_put((order[start : start + h.shape[0]],), padded)
        start += h.shape[0]
    return out


def _needs_graph(tensors: list[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _ToGroups(torch.autograd.Function):
    """Backward writes every group's gradient into one zero [B, N, D] (slicing a sorted copy per
    group instead would build, fill and add one full-size gradient per group)."""

    @staticmethod
    def forward(ctx, x, order, bounds):  # noqa: ANN001 (autograd signature)
        ctx.save_for_backward(order)
        ctx.bounds, ctx.shape = bounds, x.shape
        return _group_rows(x, order, bounds)

    @staticmethod
    def backward(ctx, *grads):  # noqa: ANN001 (autograd signature)
        (order,) = ctx.saved_tensors
        grad_x = grads[0].new_zeros(ctx.shape)
        for grad, (start, end, width) in zip(grads, ctx.bounds, strict=True):  # all materialised
            grad_x[:, :width].index_copy_(0, order[start:end], grad)
        return grad_x, None, None


class _Ungroup(torch.autograd.Function):
    """The inverse of :class:`_ToGroups`: the groups' outputs into one zero [B, width, D]."""

    @staticmethod
    def forward(ctx, order, width, *outputs):  # noqa: ANN001 (autograd signature)
        ctx.save_for_backward(order)
        ctx.bounds = []
        start = 0
        for h in outputs:
            ctx.bounds.append((start, start + h.shape[0], h.shape[1]))
            start += h.shape[0]
        return _ungroup_rows(order, width, outputs)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001 (autograd signature)
        (order,) = ctx.saved_tensors
        return None, None, *_group_rows(grad, order, ctx.bounds)


def _ungroup_rows(
    order: torch.Tensor, width: int, outputs: tuple[torch.Tensor, ...] | list[torch.Tensor]
) -> torch.Tensor:
    """The groups' [b, w, ...] (consecutive in sorted order) -> one zero [B, width, ...]."""
    first = outputs[0]
    out = first.new_zeros(order.shape[0], width, *first.shape[2:])
    start = 0
    for h in outputs:
        out[:, : h.shape[1]].index_copy_(0, order[start : start + h.shape[0]], h)
        start += h.shape[0]
    return out


def _to_groups_fused(x: torch.Tensor, order: torch.Tensor, bounds: Bounds) -> list[torch.Tensor]:
    if _needs_graph([x]):
        return list(_ToGroups.apply(x, order, bounds))
    return list(_group_rows(x, order, bounds))


def _ungroup_fused(outputs: list[torch.Tensor], order: torch.Tensor, width: int) -> torch.Tensor:
    if _needs_graph(outputs):
        return _Ungroup.apply(order, width, *outputs)
    return _ungroup_rows(order, width, outputs)


kernels.define(TO_GROUPS, to_groups_reference)
kernels.define(UNGROUP, ungroup_reference)
kernels.register(TO_GROUPS, "fused", _to_groups_fused, devices=("cpu",))
kernels.register(UNGROUP, "fused", _ungroup_fused, devices=("cpu",))


def to_groups(x: torch.Tensor, groups: LengthGroups) -> list[torch.Tensor]:
    """x [B, N, ...] in batch order -> the groups' inputs [b, w, ...], contiguous, sorted order."""
    order = groups.order.to(x.device)
    return kernels.resolve(TO_GROUPS, x.device)(x, order, groups.bounds)


def ungroup(outputs: list[torch.Tensor], order: torch.Tensor, width: int) -> torch.Tensor:
    """The groups' outputs [b, w, ...] (in sorted order) -> [B, width, ...] in batch order (rows
    past each group's w are zero)."""
    order = order.to(outputs[0].device)
    return kernels.resolve(UNGROUP, outputs[0].device)(outputs, order, width)

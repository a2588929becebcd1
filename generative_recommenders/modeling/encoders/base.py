"""What SASRec and HSTU share: item embeddings, similarity, preprocessing and the encoder API."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class SequentialEncoder(nn.Module):
    """Base of the sequential encoders.

    Subclasses implement ``_encode_all(past_lengths, past_ids, past_embeddings, past_payloads)
    -> (lengths' [B], states [B, N', D])`` with states already output-postprocessed and zero on
    padding rows; ``N' = N`` unless the preprocessor interleaves several tokens per event.
    """

    def __init__(
        self,
        embedding_module: nn.Module,
        similarity_module: nn.Module,
        input_features_preproc_module: nn.Module,
        output_postproc_module: nn.Module,
    ) -> None:
        super().__init__()
        self.embedding_module = embedding_module
        self.similarity = similarity_module
        self.input_preproc = input_features_preproc_module
        self.output_postproc = output_postproc_module

    @property
    def item_embedding_dim(self) -> int:
        return int(self.embedding_module.item_embedding_dim)

    def get_item_embeddings(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[*] int64 -> [*, D]."""
        return self.embedding_module.get_item_embeddings(item_ids)

    def interaction(
        self,
        query_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor,
        user_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The similarity module's forward: [B, D] x ([B, R, D] | [X, D]) -> scores, aux losses."""
        return self.similarity(query_embeddings, item_embeddings, user_ids)

    def _encode_all(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """lengths [B], ids [B, N] int64, embeddings [B, N, D], payloads -> states [B, N', D]."""
        return self._encode_all(past_lengths, past_ids, past_embeddings, past_payloads)[1]

    def encode(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """-> [B, D], the state after each user's last valid event (zero for an empty history)."""
        lengths, states = self._encode_all(past_lengths, past_ids, past_embeddings, past_payloads)
        return gather_last(states, lengths)


def gather_last(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """states [B, N, D], lengths [B] -> [B, D] rows at lengths - 1 (row 0, i.e. zeros, if 0)."""
    index = (lengths.to(torch.int64) - 1).clamp(min=0)
    picked = states[torch.arange(states.shape[0], device=states.device), index]
    return picked * (lengths > 0).unsqueeze(-1).to(picked.dtype)


class LengthGroups(NamedTuple):
    """Users sorted by length, longest first (stable), cut into attention groups.

    order [B] int64 (on the lengths' device): sorted position -> batch row; lengths [B] (host):
    the sorted lengths;
    bounds: (start, end, width) per group, width = the group's longest length (at least 1). A
    valid position only attends to earlier, valid ones, so running each group padded to its own
    width is exact, and the attention costs about sum(length^2) instead of B * N^2.
    """

    order: torch.Tensor
    lengths: torch.Tensor
    bounds: list[tuple[int, int, int]]


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


Bounds = list[tuple[int, int, int]]  # (start, end, width) per group, in sorted order


def _group_rows(x: torch.Tensor, order: torch.Tensor, bounds: Bounds) -> tuple[torch.Tensor, ...]:
    """x [B, N, ...] -> x[order[start:end], :width] per group, each contiguous."""
    return tuple(x[:, :width].index_select(0, order[start:end]) for start, end, width in bounds)


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


def _needs_graph(tensors: list[torch.Tensor]) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


class _ToGroups(torch.autograd.Function):
    """x [B, N, D] -> each group's rows (in sorted order), cut to its width: [b, w, D] each.
    Backward writes every group's gradient into one zero [B, N, D] (slicing a sorted copy per
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


def to_groups(x: torch.Tensor, groups: LengthGroups) -> list[torch.Tensor]:
    """x [B, N, ...] in batch order -> the groups' inputs [b, w, ...], contiguous, in sorted order.
    Without autograd (evaluation, tracing) the same ops run outside the autograd function."""
    order = groups.order.to(x.device)
    if _needs_graph([x]):
        return list(_ToGroups.apply(x, order, groups.bounds))
    return list(_group_rows(x, order, groups.bounds))


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


def ungroup(outputs: list[torch.Tensor], order: torch.Tensor, width: int) -> torch.Tensor:
    """The groups' outputs [b, w, D] (in sorted order) -> [B, width, D] in batch order (rows
    past each group's w are zero)."""
    order = order.to(outputs[0].device)
    if _needs_graph(outputs):
        return _Ungroup.apply(order, width, *outputs)
    return _ungroup_rows(order, width, outputs)

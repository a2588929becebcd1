"""Negative samplers for the autoregressive losses: in-batch and local (whole catalogue).

Both draw ``num_to_sample`` candidates uniformly (with replacement) from a candidate table of ``U``
items, and return their ids and (optionally L2-normalised) embeddings. By default every supervised
position gets its own draw; :class:`NegativesSharing` lets all positions of a batch row, or of the
whole batch, share one draw (:meth:`_UniformSampler.draw_shared_slots`). A draw may equal the
position's positive (an "accidental hit"); the losses mask those.

Besides the public ``forward``, the samplers expose the two halves the losses use to stay cheap:
``draw_slots`` (int64 slots into the candidate table, no embedding work) and
``make_lookup`` (slots -> embeddings, one gather), so a loss can draw once and gather chunk by chunk
(inside activation checkpointing) without ever holding all ``[L, R, D]`` negatives at once.

``candidate_log_q()`` [U] is log q per slot of the candidate table, q the probability that one draw
yields that slot's item (the loss's logQ correction): ``-log X`` for the local sampler over X
items; for the in-batch sampler the in-batch frequency ``count_in_batch(id) / valid positions``
(exactly the draw probability without dedup; with dedup, where draws are uniform over the distinct
ids, it is the usual in-batch estimate of the item's popularity, since the probability that an
item is among the batch's candidates at all is not known).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

import torch
from torch import nn

from generative_recommenders.registry import SAMPLERS

Lookup = Callable[[torch.Tensor], torch.Tensor]


class NegativesSharing(enum.Enum):
    """Which supervised positions share one draw of R negatives."""

    NONE = "none"  # every position draws its own R (independent)
    ROW = "row"  # each batch row (one user's sequence) draws R shared by all of its positions
    BATCH = "batch"  # one draw of R shared by every position of the step


def l2_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """[..., D] -> [..., D] with unit L2 norm along the last dim (norms clamped below at ``eps``)."""
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp(min=eps)


class _UniformSampler(nn.Module):
    """Shared parts: normalisation, uniform slot draws, the public ``forward``."""

    def __init__(
        self, l2_norm: bool, l2_norm_eps: float, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self._l2_norm = bool(l2_norm)
        self._l2_norm_eps = float(l2_norm_eps)
        self.generator = generator

    def normalize_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] -> [..., D]: L2-normalised when ``l2_norm`` is set, else ``x`` unchanged."""
        return l2_normalize(x, self._l2_norm_eps) if self._l2_norm else x

    def num_candidates(self) -> int:
        """U, the size of the table draws come from."""
        raise NotImplementedError

    def candidate_ids(self) -> torch.Tensor:
        """[U] int64 ids of the candidate table."""
        raise NotImplementedError

    def make_lookup(self, num_draws: int) -> Lookup:
        """A function slots [*] -> normalised embeddings [*, D] for about ``num_draws`` slots."""
        raise NotImplementedError

    def candidate_log_q(self) -> torch.Tensor:
        """[U] float32 log q per slot of the candidate table (see the module docstring)."""
        raise NotImplementedError

    def _sorted_candidates(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(candidate ids sorted [U], their slots [U]), or None when an id repeats."""
        raise NotImplementedError

    def candidate_slots(self, ids: torch.Tensor) -> torch.Tensor | None:
        """ids [L] int64 -> [L] int64: each id's slot in the candidate table, -1 where absent.

        None when the table holds an id more than once (an accidental hit is then not one slot).
        The fused sampled softmax masks hits by slot with it, with no [L, R] id lookup.
        """
        sorted_candidates = self._sorted_candidates()
        if sorted_candidates is None:
            return None
        sorted_ids, slots = sorted_candidates
        if sorted_ids.numel() == 0:
            return torch.full_like(ids, -1)
        index = torch.searchsorted(sorted_ids, ids).clamp_(max=sorted_ids.numel() - 1)
        found = sorted_ids.index_select(0, index) == ids
        return torch.where(found, slots.index_select(0, index), -1)

    def candidate_table(self) -> torch.Tensor:
        """[U, D] normalised embeddings of the whole candidate table (row i = slot i).

        Differentiable; the fused sampled-softmax path scores slots against it without ever
        materialising the ``[L, R, D]`` gathered negatives.
        """
        raise NotImplementedError

    def draw_slots(
        self,
        num_positions: int,
        num_to_sample: int,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """[L, R] int64 slots, each uniform over the U candidates, independent per position."""
        size = self.num_candidates()
        if size == 0:
            raise ValueError("negative sampler has no candidates (call process_batch first)")
        gen = generator if generator is not None else self.generator
        return torch.randint(0, size, (num_positions, num_to_sample), device=device, generator=gen)

    def draw_shared_slots(
        self,
        sharing: NegativesSharing,
        num_to_sample: int,
        position_rows: torch.Tensor,
        batch_size: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One draw per group of positions: (slots [G, R] int64, groups [L] int64 in 0..G-1).

        ``position_rows`` [L] is each supervised position's batch row (0..B-1, B = ``batch_size``).
        ROW: G = B, one independent draw per batch row, ``groups = position_rows``.
        BATCH: G = 1, ``groups`` all zero. Position l's negatives are ``slots[groups[l]]``.
        """
        device = position_rows.device
        if sharing is NegativesSharing.ROW:
            return self.draw_slots(batch_size, num_to_sample, device, generator), position_rows
        if sharing is NegativesSharing.BATCH:
            slots = self.draw_slots(1, num_to_sample, device, generator)
            return slots, torch.zeros_like(position_rows)
        raise ValueError(f"draw_shared_slots: expected ROW or BATCH sharing, got {sharing}")

    def forward(
        self,
        positive_ids: torch.Tensor,
        num_to_sample: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """positive_ids [L] -> (ids [L, R] int64, embeddings [L, R, D]); R = ``num_to_sample``.

        ``positive_ids`` only fixes L and the device: draws are not conditioned on it (accidental
        hits are the loss's business).
        """
        slots = self.draw_slots(
            positive_ids.shape[0], num_to_sample, positive_ids.device, generator
        )
        ids = self.candidate_ids()[slots]
        return ids, self.make_lookup(slots.numel())(slots)


@SAMPLERS.register("in-batch")
class InBatchNegativesSampler(_UniformSampler):
    """Negatives drawn from the valid items of the current batch.

    Under DistributedDataParallel each rank draws from its own local batch only.

    Args:
        l2_norm: L2-normalise the candidate embeddings.
        l2_norm_eps: lower clamp of the norm.
        dedup_embeddings: keep each distinct id once, so popular items are not over-drawn;
            when False every valid occurrence is a candidate (draws follow in-batch frequency).
        generator: optional ``torch.Generator`` (on the draws' device) for reproducible draws.
    """

    def __init__(
        self,
        l2_norm: bool,
        l2_norm_eps: float,
        dedup_embeddings: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(l2_norm, l2_norm_eps, generator)
        self._dedup = bool(dedup_embeddings)
        self._ids: torch.Tensor = torch.zeros(0, dtype=torch.int64)
        self._valid_ids: torch.Tensor = self._ids  # every valid occurrence (for candidate_log_q)
        self._embeddings: torch.Tensor | None = None

    def process_batch(
        self, ids: torch.Tensor, presences: torch.Tensor, embeddings: torch.Tensor
    ) -> None:
        """Keep the batch's valid ids [U] and their normalised embeddings [U, D].

        Args:
            ids: [*] int64 item ids.
            presences: [*] bool, True where the id is a real item (not padding).
            embeddings: [*, D] the ids' embeddings (gradients flow back through them).
        """
        flat_ids = ids.reshape(-1)
        keep = presences.reshape(-1) & (flat_ids != 0)
        valid_ids = flat_ids[keep]
        valid_embeddings = embeddings.reshape(flat_ids.shape[0], -1)[keep]
        self._valid_ids = valid_ids
        if self._dedup and valid_ids.numel() > 0:
            unique_ids, inverse = torch.unique(valid_ids, return_inverse=True)
            order = torch.arange(valid_ids.shape[0], device=valid_ids.device)
            first = torch.full_like(unique_ids, valid_ids.shape[0])
            first.scatter_reduce_(0, inverse, order, reduce="amin")
            valid_ids, valid_embeddings = unique_ids, valid_embeddings[first]
        self._ids = valid_ids
        self._embeddings = self.normalize_embeddings(valid_embeddings)

    def num_candidates(self) -> int:
        return int(self._ids.shape[0])

    def candidate_ids(self) -> torch.Tensor:
        return self._ids

    def make_lookup(self, num_draws: int) -> Lookup:
        table = self._embeddings
        if table is None:
            raise ValueError("InBatchNegativesSampler: call process_batch before sampling")
        return lambda slots: table[slots]

    def candidate_table(self) -> torch.Tensor:
        if self._embeddings is None:
            raise ValueError("InBatchNegativesSampler: call process_batch before sampling")
        return self._embeddings

    def candidate_log_q(self) -> torch.Tensor:
        """log(count_in_batch(id) / valid positions) per slot (computed on demand: only the
        logQ correction needs it)."""
        valid = self._valid_ids
        if valid.numel() == 0:
            raise ValueError("InBatchNegativesSampler: call process_batch before sampling")
        _, inverse, counts = torch.unique(valid, return_inverse=True, return_counts=True)
        per_slot = counts if self._dedup else counts[inverse]  # unique ids are the dedup table
        return torch.log(per_slot.to(torch.float32) / valid.numel())

    def _sorted_candidates(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self._dedup:
            return None
        slots = torch.arange(self._ids.shape[0], device=self._ids.device)
        return self._ids, slots  # torch.unique's ids are sorted

    def debug_str(self) -> str:
        return f"in-batch{'-l2' if self._l2_norm else ''}{'-dedup' if self._dedup else ''}"


@SAMPLERS.register("local")
class LocalNegativesSampler(_UniformSampler):
    """Negatives drawn uniformly from the whole catalogue (its real ids, gaps respected).

    Args:
        item_embedding_fn: ids [*] -> embeddings [*, D] from the current item table.
        catalogue_item_ids: [X] int64 distinct item ids (no 0), e.g. the ids present in the data.
        l2_norm: L2-normalise looked-up embeddings.
        l2_norm_eps: lower clamp of the norm.
        generator: optional ``torch.Generator`` (on the draws' device) for reproducible draws.
    """

    def __init__(
        self,
        item_embedding_fn: Callable[[torch.Tensor], torch.Tensor],
        catalogue_item_ids: torch.Tensor,
        l2_norm: bool,
        l2_norm_eps: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(l2_norm, l2_norm_eps, generator)
        if catalogue_item_ids.dim() != 1 or catalogue_item_ids.numel() == 0:
            raise ValueError("catalogue_item_ids must be a non-empty 1-D tensor of item ids")
        if catalogue_item_ids.dtype != torch.int64:
            raise ValueError(f"catalogue_item_ids must be int64, got {catalogue_item_ids.dtype}")
        if bool((catalogue_item_ids <= 0).any()):
            raise ValueError("catalogue_item_ids must be positive (0 is padding)")
        sorted_ids, order = catalogue_item_ids.sort()
        if bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
            raise ValueError(
                "catalogue_item_ids must be distinct (a repeated id is drawn twice as often)"
            )
        # Not registered as a submodule even when it is one: the table belongs to the encoder, and
        # registering it here would duplicate its weights in the model's state_dict.
        object.__setattr__(self, "_item_embedding_fn", item_embedding_fn)
        self.register_buffer("_catalogue", catalogue_item_ids.clone(), persistent=False)
        self.register_buffer("_sorted_catalogue", sorted_ids, persistent=False)
        self.register_buffer("_sorted_catalogue_slots", order, persistent=False)

    def process_batch(
        self, ids: torch.Tensor, presences: torch.Tensor, embeddings: torch.Tensor
    ) -> None:
        """No-op: the candidates are the whole catalogue."""

    def num_candidates(self) -> int:
        return int(self._catalogue.shape[0])

    def candidate_ids(self) -> torch.Tensor:
        return self._catalogue

    def make_lookup(self, num_draws: int) -> Lookup:
        """Normalise the whole catalogue once when that is smaller than the draws, else per draw."""
        catalogue = self._catalogue
        if self._l2_norm and catalogue.shape[0] <= num_draws:
            table = self.normalize_embeddings(self._item_embedding_fn(catalogue))
            return lambda slots: table[slots]
        return lambda slots: self.normalize_embeddings(self._item_embedding_fn(catalogue[slots]))

    def candidate_table(self) -> torch.Tensor:
        return self.normalize_embeddings(self._item_embedding_fn(self._catalogue))

    def unnormalized_candidate_table(self) -> tuple[torch.Tensor, float | None]:
        """(rows [U, D], eps): :meth:`candidate_table` is ``rows / max(|rows|, eps)`` row-wise,
        or ``rows`` itself when eps is None. Lets the fused sampled softmax normalise inside its
        op instead of holding a normalised copy of the table (and its gradient's copies) in
        autograd; samplers without the method are scored on ``candidate_table()`` as it is."""
        rows = self._item_embedding_fn(self._catalogue)
        return rows, (self._l2_norm_eps if self._l2_norm else None)

    def candidate_log_q(self) -> torch.Tensor:
        """-log X for every slot: the draws are uniform over the X catalogue items."""
        size = self._catalogue.shape[0]
        return torch.full((size,), -math.log(size), device=self._catalogue.device)

    def _sorted_candidates(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sorted_catalogue, self._sorted_catalogue_slots

    def debug_str(self) -> str:
        return f"local{'-l2' if self._l2_norm else ''}"

"""Autoregressive losses with sampled negatives: sampled softmax and binary cross-entropy.

Every supervised position (``supervision_weights > 0``) predicts its next item. The padded
``[B, N, ...]`` inputs are first reduced to the jagged ``[L, ...]`` form (L = number of supervised
positions), so padding costs nothing. Per position, the query is scored against its positive and its
negatives (its own independent draw by default; see shared negatives below) in one similarity call
(``similarity(query [L, D], items [L, 1 + R, D])``), logits are divided by the temperature, and
negatives equal to the positive (accidental hits) are masked to ``-inf``. The loss is the weighted
mean ``sum(w * loss) / sum(w)``.

Fast path (dot-product similarity, the default): the positive logit is a row-wise dot product and
the negatives' logits come from :func:`generative_recommenders.ops.sampled_dot.sampled_dot_logits`
against the sampler's normalised candidate table, in chunks, so neither the ``[L, R, D]`` negatives
nor the ``[L, 1 + R, D]`` candidates are ever materialised. The sampled softmax with independent
negatives goes through :func:`~generative_recommenders.ops.sampled_dot.sampled_softmax_losses`
(logits, hit mask and logsumexp in one op) when every candidate id has one slot
(``sampler.candidate_slots``; not so for an in-batch table without dedup). ``fused=False`` keeps
the plain path below (the reference the fast path is tested against); other similarities always
take it.

Memory (plain path): negatives are drawn as int64 slots first and their embeddings gathered per
chunk of positions; with ``activation_checkpoint`` each chunk's gather and scoring run under
``torch.utils.checkpoint``, so the ``[L, 1 + R, D]`` candidate tensor is never held whole for backward.

Shared negatives (``negatives_sharing``, a ``modeling.negatives.NegativesSharing``): ``ROW``
draws R negatives per batch row, shared by the row's positions; ``BATCH`` draws R for the whole
step. Normalisation, temperature and accidental-hit masking (per position, against that position's
positive) are unchanged. With a dot product (fused) the shared negatives' embeddings are gathered
once, ``[G, R, D]``, and scored with one GEMM ``[L, D] x [D, R]`` (BATCH) or one bmm
``[B, N, D] x [B, D, R]`` over the padded queries (ROW); other similarities take the plain path with
each position's slots expanded from its group's (same results, same cost as independent draws).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from generative_recommenders.modeling.negatives import Lookup, NegativesSharing
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.ops.sampled_dot import sampled_dot_logits, sampled_softmax_losses
from generative_recommenders.registry import LOSSES


class _SampledLoss(nn.Module):
    """Shared jagged reduction, chunking, masking and weighting; subclasses define per-row loss."""

    def __init__(
        self,
        num_to_sample: int,
        temperature: float,
        activation_checkpoint: bool,
        checkpoint_chunk_size: int,
        fused: bool = True,
        negatives_sharing: NegativesSharing = NegativesSharing.NONE,
    ) -> None:
        super().__init__()
        if num_to_sample < 1:
            raise ValueError(f"num_to_sample must be >= 1, got {num_to_sample}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if checkpoint_chunk_size < 1:
            raise ValueError(f"checkpoint_chunk_size must be >= 1, got {checkpoint_chunk_size}")
        self._num_to_sample = int(num_to_sample)
        self._temperature = float(temperature)
        self._activation_checkpoint = bool(activation_checkpoint)
        self._chunk_size = int(checkpoint_chunk_size)
        self.fused = bool(fused)
        if not isinstance(negatives_sharing, NegativesSharing):
            raise ValueError(
                f"negatives_sharing must be a NegativesSharing, got {negatives_sharing!r}"
            )
        self.negatives_sharing = negatives_sharing

    def _sharing_str(self) -> str:
        """Run-name suffix: empty for independent draws, e.g. ``-share_row`` otherwise."""
        sharing = self.negatives_sharing
        return "" if sharing is NegativesSharing.NONE else f"-share_{sharing.value}"

    def _row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        """logits [c, 1 + R] (column 0 = positive, already / temperature), hits [c, R] -> [c]."""
        raise NotImplementedError

    def _independent_dot_losses(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        positive_ids: torch.Tensor,
        sampler: nn.Module,
        slots: torch.Tensor,
    ) -> torch.Tensor:
        """Fused dot-product path, own negatives per position: queries [L, D] (already
        / temperature), positives [L, D], positive_ids [L], slots [L, R] -> losses [L]."""
        logits = _independent_dot_logits(queries, positives, sampler, slots)  # [L, 1 + R]
        hits = _lookup_ids(sampler.candidate_ids(), slots) == positive_ids.unsqueeze(1)
        return self._row_losses(logits, hits)

    def forward(
        self,
        lengths: torch.Tensor,
        output_embeddings: torch.Tensor,
        supervision_ids: torch.Tensor,
        supervision_embeddings: torch.Tensor,
        supervision_weights: torch.Tensor,
        negatives_sampler: nn.Module,
        similarity_module: nn.Module,
        user_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted mean loss over supervised positions, and the similarity's auxiliary losses.

        Args:
            lengths: [B] history lengths; only for the caller's bookkeeping: the supervised
                positions are exactly those with ``supervision_weights > 0``.
            output_embeddings: [B, N, D] queries (encoder output at positions 0..N-1).
            supervision_ids: [B, N] int64 next-item ids (0 = padding).
            supervision_embeddings: [B, N, D] raw table rows of ``supervision_ids``; normalised
                here with ``negatives_sampler.normalize_embeddings``, like the negatives.
            supervision_weights: [B, N] float weights (0 = not supervised).
            negatives_sampler: an in-batch or local sampler (``process_batch`` already called).
            similarity_module: the model's similarity (see ``modeling.similarity.base``).
            user_ids: [B] int64 or None, repeated per position for user-aware similarities.

        Returns:
            (scalar loss, {name: scalar}) with the auxiliary losses averaged over positions.
        """
        del lengths
        # One nonzero (one host sync) gives the jagged rows; everything else is index_select.
        rows = (supervision_weights > 0).reshape(-1).nonzero().squeeze(1)  # [L]
        queries = select_rows(output_embeddings, rows)  # [L, D]
        positive_ids = supervision_ids.reshape(-1).index_select(0, rows)  # [L]
        positives = negatives_sampler.normalize_embeddings(
            select_rows(supervision_embeddings, rows)
        )
        weights = supervision_weights.reshape(-1).index_select(0, rows).to(queries.dtype)  # [L]
        row_user_ids = None
        if user_ids is not None:
            seq_len = supervision_ids.shape[1]
            row_user_ids = user_ids.index_select(0, torch.div(rows, seq_len, rounding_mode="floor"))
        num_rows = queries.shape[0]
        if num_rows == 0:
            return output_embeddings.sum() * 0.0, {}

        groups = None  # [L] each position's draw group when negatives are shared
        if self.negatives_sharing is NegativesSharing.NONE:
            slots = negatives_sampler.draw_slots(num_rows, self._num_to_sample, queries.device)
        else:
            seq_len = supervision_ids.shape[1]
            slots, groups = negatives_sampler.draw_shared_slots(
                self.negatives_sharing,
                self._num_to_sample,
                torch.div(rows, seq_len, rounding_mode="floor"),
                supervision_ids.shape[0],
            )  # [G, R], [L]
        if self.fused and isinstance(similarity_module, DotProductSimilarity):
            if groups is None:  # 1 / temperature on the [L, D] queries, not the [L, 1 + R] logits
                scaled = queries * (1.0 / self._temperature)
                losses = self._independent_dot_losses(
                    scaled, positives, positive_ids, negatives_sampler, slots
                )
            else:
                negatives = negatives_sampler.make_lookup(slots.numel())(slots)  # [G, R, D]
                logits = _shared_dot_logits(queries, positives, output_embeddings, rows, negatives)
                negative_ids = _lookup_ids(negatives_sampler.candidate_ids(), slots)  # [G, R]
                hits = negative_ids.index_select(0, groups) == positive_ids.unsqueeze(1)  # [L, R]
                losses = self._row_losses(logits / self._temperature, hits)
            return (losses * weights).sum() / weights.sum(), {}
        negative_ids = _lookup_ids(negatives_sampler.candidate_ids(), slots)  # [L, R] (or [G, R])
        if groups is not None:  # plain path: every position gets its group's slots
            slots = slots.index_select(0, groups)  # [L, R]
            negative_ids = negative_ids.index_select(0, groups)
        lookup = negatives_sampler.make_lookup(slots.numel())
        chunk = self._chunk_size if self._activation_checkpoint else num_rows

        total = queries.new_zeros(())
        aux_total: dict[str, torch.Tensor] = {}
        for start in range(0, num_rows, chunk):
            end = min(start + chunk, num_rows)
            args = (
                queries[start:end],
                positives[start:end],
                positive_ids[start:end],
                slots[start:end],
                negative_ids[start:end],
                weights[start:end],
                None if row_user_ids is None else row_user_ids[start:end],
            )
            fn = _ChunkLoss(self, lookup, similarity_module)
            if self._activation_checkpoint:
                loss_sum, aux = checkpoint(fn, *args, use_reentrant=False)
            else:
                loss_sum, aux = fn(*args)
            total = total + loss_sum
            share = (end - start) / num_rows
            for name, value in aux.items():
                aux_total[name] = aux_total.get(name, 0.0) + value * share
        return total / weights.sum(), aux_total


def select_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """x [B, N, D], rows [L] flat indices ``b * N + t`` -> x[b, t] as [L, D].

    When x is a slice along dim 1 of a contiguous [B, M, D] tensor (the model passes
    ``outputs[:, :-1]`` and ``embeddings[:, 1:]``), the rows are read from that tensor: no
    contiguous copy of the slice, and in backward one zero [B, M, D] gradient instead of one per
    slice view plus the slice's own."""
    base, (B, N, D) = x._base, x.shape
    if (
        base is not None
        and base.dim() == 3
        and base.is_contiguous()
        and x.stride() == base.stride()
        and (base.shape[0], base.shape[2]) == (B, D)
    ):
        start = (x.storage_offset() - base.storage_offset()) // D  # first index along dim 1
        base_rows = rows + torch.div(rows, N, rounding_mode="floor") * (base.shape[1] - N) + start
        return base.view(-1, D).index_select(0, base_rows)
    return x.reshape(-1, D).index_select(0, rows)


def _mask_hits(logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """logits [c, 1 + R] with the negatives' columns at accidental hits (hits [c, R]) set to -inf.

    On CPU, where ``masked_fill``/``where`` over [c, R] cost ~1 ns per element (and as much again
    in backward), the few hits (about R / U of the draws) are written with one sparse
    ``index_put``; elsewhere it is the dense ``masked_fill``. Either way a new tensor.
    """
    if logits.device.type != "cpu":
        return torch.cat([logits[:, :1], logits[:, 1:].masked_fill(hits, float("-inf"))], dim=1)
    rows, cols = hits.nonzero(as_tuple=True)
    return logits.index_put((rows, cols + 1), logits.new_full((), float("-inf")))


def _lookup_ids(ids: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """ids [U], slots [*, R] int64 -> ids[slots] (index_select: advanced indexing is slower)."""
    return ids.index_select(0, slots.reshape(-1)).view(slots.shape)


def _independent_dot_logits(
    queries: torch.Tensor, positives: torch.Tensor, sampler: nn.Module, slots: torch.Tensor
) -> torch.Tensor:
    """queries [L, D], positives [L, D], slots [L, R] -> logits [L, 1 + R] (not / temperature).

    Each position's own negatives, scored by the chunked fused kernel against the candidate table.
    """
    table = sampler.candidate_table()  # [U, D]
    positive_logits = (queries * positives).sum(dim=-1, keepdim=True)  # [L, 1]
    return torch.cat(
        [positive_logits, sampled_dot_logits(queries, table.to(queries.dtype), slots)], dim=1
    )


def _shared_dot_logits(
    queries: torch.Tensor,
    positives: torch.Tensor,
    padded_queries: torch.Tensor,
    rows: torch.Tensor,
    negatives: torch.Tensor,
) -> torch.Tensor:
    """Logits [L, 1 + R] (not / temperature) against shared negatives, without an [L, R, D] copy.

    Args:
        queries: [L, D] supervised positions (``padded_queries`` flattened, rows ``rows``).
        positives: [L, D] normalised positive embeddings.
        padded_queries: [B, N, D] the queries before the jagged reduction.
        rows: [L] int64 flat indices of the supervised positions into ``B * N``.
        negatives: [1, R, D] one set for the batch (one GEMM) or [B, R, D] one per row (a bmm).
    """
    negatives = negatives.to(queries.dtype)
    positive_logits = (queries * positives).sum(dim=-1, keepdim=True)  # [L, 1]
    if negatives.shape[0] == 1:
        negative_logits = queries @ negatives[0].t()  # [L, R]
    else:
        scores = torch.bmm(padded_queries, negatives.transpose(1, 2))  # [B, N, R]
        negative_logits = scores.reshape(-1, scores.shape[-1]).index_select(0, rows)  # [L, R]
    return torch.cat([positive_logits, negative_logits], dim=1)


class _ChunkLoss:
    """One chunk's candidate gather, scoring and weighted loss sum (checkpointable)."""

    def __init__(self, loss: _SampledLoss, lookup: Lookup, similarity: Callable) -> None:
        self._loss = loss
        self._lookup = lookup
        self._similarity = similarity

    def __call__(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        positive_ids: torch.Tensor,
        slots: torch.Tensor,
        negative_ids: torch.Tensor,
        weights: torch.Tensor,
        user_ids: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        candidates = torch.cat([positives.unsqueeze(1), self._lookup(slots)], dim=1)  # [c, 1+R, D]
        logits, aux = self._similarity(queries, candidates, user_ids)  # [c, 1 + R]
        logits = logits / self._loss._temperature
        hits = negative_ids == positive_ids.unsqueeze(1)  # [c, R]
        losses = self._loss._row_losses(logits, hits)  # [c]
        return (losses * weights).sum(), aux


@LOSSES.register("SampledSoftmaxLoss")
class SampledSoftmaxLoss(_SampledLoss):
    """Cross-entropy of the positive against itself plus ``num_to_sample`` sampled negatives.

    Per position: ``-log softmax([s+, s1, ..., sR] / T)[0]`` with accidental hits excluded.

    Args:
        num_to_sample: R negatives per position (``train_fn.num_negatives``).
        temperature: T, logits are divided by it (``train_fn.temperature``; 0.05 unless bound).
        activation_checkpoint: recompute each chunk's scores in backward to bound memory (plain
            path; the fused path is chunked and bounded anyway).
        checkpoint_chunk_size: positions per checkpointed chunk.
        fused: use the fused dot-product path when the similarity is a dot product.
        negatives_sharing: NONE (independent draws per position), ROW or BATCH (shared draws).
    """

    def __init__(
        self,
        num_to_sample: int = 1,
        temperature: float = 0.05,
        activation_checkpoint: bool = False,
        checkpoint_chunk_size: int = 4096,
        fused: bool = True,
        negatives_sharing: NegativesSharing = NegativesSharing.NONE,
    ) -> None:
        super().__init__(
            num_to_sample,
            temperature,
            activation_checkpoint,
            checkpoint_chunk_size,
            fused,
            negatives_sharing,
        )

    def _row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        return torch.logsumexp(_mask_hits(logits, hits), dim=1) - logits[:, 0]

    def _independent_dot_losses(
        self,
        queries: torch.Tensor,
        positives: torch.Tensor,
        positive_ids: torch.Tensor,
        sampler: nn.Module,
        slots: torch.Tensor,
    ) -> torch.Tensor:
        """One fused op (:func:`~generative_recommenders.ops.sampled_dot.sampled_softmax_losses`)
        when each positive has at most one slot in the table; the generic path otherwise."""
        positive_slots = sampler.candidate_slots(positive_ids)
        if positive_slots is None:
            return super()._independent_dot_losses(queries, positives, positive_ids, sampler, slots)
        table = sampler.candidate_table().to(queries.dtype)  # [U, D]
        positive_logits = (queries * positives).sum(dim=-1)  # [L]
        return sampled_softmax_losses(queries, table, positive_logits, slots, positive_slots)

    def debug_str(self) -> str:
        return f"ssl-t{self._temperature:g}-n{self._num_to_sample}{self._sharing_str()}"


# Under train_fn the logits are not scaled (the paper's BCE); an explicit train_fn.temperature other
# than 1.0 is refused rather than silently dropped. Direct users may still pass any temperature.
@LOSSES.register("BCELoss", fixed={"temperature": 1.0})
class BCELoss(_SampledLoss):
    """Binary cross-entropy: the positive labelled 1, one sampled negative labelled 0.

    Per position: ``softplus(-s+/T) + softplus(s-/T)``, the negative term dropped on an
    accidental hit (the negative equals the positive). With ``negatives_sharing`` BATCH one
    negative serves every position of the step; with ROW, one per batch row.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        activation_checkpoint: bool = False,
        checkpoint_chunk_size: int = 4096,
        fused: bool = True,
        negatives_sharing: NegativesSharing = NegativesSharing.NONE,
    ) -> None:
        super().__init__(
            1, temperature, activation_checkpoint, checkpoint_chunk_size, fused, negatives_sharing
        )

    def _row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        positive = F.softplus(-logits[:, 0])
        negative = F.softplus(logits[:, 1]).masked_fill(hits[:, 0], 0.0)
        return positive + negative

    def debug_str(self) -> str:
        return f"bce-t{self._temperature:g}{self._sharing_str()}"


def get_weighted_loss(
    main_loss: torch.Tensor, aux_losses: dict[str, torch.Tensor], weights: dict[str, float]
) -> torch.Tensor:
    """``main_loss + sum(weights[k] * aux_losses[k] for k in weights)``.

    Auxiliary losses without a weight are not added (they are still logged by the caller).

    Raises:
        ValueError: a key of ``weights`` that is not an auxiliary loss, naming the available ones.
    """
    total = main_loss
    for name, weight in weights.items():
        if name not in aux_losses:
            available = ", ".join(sorted(aux_losses)) or "none"
            raise ValueError(
                f"loss weight {name!r} names no auxiliary loss; available: {available}"
            )
        total = total + float(weight) * aux_losses[name]
    return total

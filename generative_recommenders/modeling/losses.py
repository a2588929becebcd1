"""Autoregressive losses with sampled negatives: sampled softmax and binary cross-entropy.

Every supervised position (``supervision_weights > 0``) predicts its next item. The padded
``[B, N, ...]`` inputs are first reduced to the jagged ``[L, ...]`` form (L = number of supervised
positions), so padding costs nothing. Per position, the query is scored against its positive and its
negatives (its own independent draw by default; see shared negatives below) in one similarity call
(``similarity(query [L, D], items [L, 1 + R, D])``), logits are divided by the temperature, and
negatives equal to the positive (accidental hits) are masked to ``-inf``. The loss is the weighted
mean ``sum(w * loss) / sum(w)``.

How the logits and losses are computed is the ops function
:func:`generative_recommenders.ops.sampled_softmax.sampled_losses`: its reference is the formula
above (the ``[L, 1 + R, D]`` candidates gathered, one similarity call; with
``activation_checkpoint``, per checkpointed chunk of positions), and ``train_fn.kernels`` picks
the kernel that runs (e.g. the fused dot-product paths that never materialise ``[L, R, D]``; see
docs/kernels.md).

Shared negatives (``negatives_sharing``, a ``modeling.negatives.NegativesSharing``): ``ROW``
draws R negatives per batch row, shared by the row's positions; ``BATCH`` draws R for the whole
step. Normalisation, temperature and accidental-hit masking (per position, against that position's
positive) are unchanged.

LogQ correction (``logq_correction``, ``train_fn.logq_correction``): each negative's logit, after
the division by the temperature, is lowered by ``log q``, q the probability that one draw of the
sampler yields that candidate (``negatives_sampler.candidate_log_q()``, per slot of its candidate
table); the positive's logit is unchanged and accidental hits stay masked. It corrects the bias of
a non-uniform sampler (popular items drawn often are otherwise over-penalised).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from generative_recommenders.modeling.negatives import NegativesSharing
from generative_recommenders.ops.jagged import select_rows
from generative_recommenders.ops.sampled_softmax import (
    SampledRows,
    sampled_losses,
    softmax_row_loss,
)
from generative_recommenders.registry import LOSSES


@dataclass
class SupervisedPositions:
    """The L supervised positions of a step, jagged: rows [L] (flat indices into B * N),
    batch_rows [L] (each one's batch row), queries [L, D], positives [L, D] (normalised by the
    sampler, like the negatives), weights [L]."""

    rows: torch.Tensor
    batch_rows: torch.Tensor
    queries: torch.Tensor
    positives: torch.Tensor
    weights: torch.Tensor


def supervised_positions(
    output_embeddings: torch.Tensor,
    supervision_embeddings: torch.Tensor,
    supervision_weights: torch.Tensor,
    negatives_sampler: nn.Module,
) -> SupervisedPositions | None:
    """[B, N, D] outputs and positives, [B, N] weights -> the positions with weight > 0
    (None when there are none). One nonzero (one host sync); everything else is index_select."""
    rows = (supervision_weights > 0).reshape(-1).nonzero().squeeze(1)  # [L]
    if rows.numel() == 0:
        return None
    queries = select_rows(output_embeddings, rows)  # [L, D]
    return SupervisedPositions(
        rows=rows,
        batch_rows=torch.div(rows, supervision_weights.shape[1], rounding_mode="floor"),
        queries=queries,
        positives=negatives_sampler.normalize_embeddings(select_rows(supervision_embeddings, rows)),
        weights=supervision_weights.reshape(-1).index_select(0, rows).to(queries.dtype),
    )


class _SampledLoss(nn.Module):
    """Shared jagged reduction, chunking, masking and weighting; subclasses define per-row loss."""

    def __init__(
        self,
        num_to_sample: int,
        temperature: float,
        activation_checkpoint: bool,
        checkpoint_chunk_size: int,
        negatives_sharing: NegativesSharing = NegativesSharing.NONE,
        logq_correction: bool = False,
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
        if not isinstance(negatives_sharing, NegativesSharing):
            raise ValueError(
                f"negatives_sharing must be a NegativesSharing, got {negatives_sharing!r}"
            )
        self.negatives_sharing = negatives_sharing
        self.logq_correction = bool(logq_correction)

    @property
    def num_to_sample(self) -> int:
        """R, the negatives drawn per position (a sampler that fixes R is checked against it)."""
        return self._num_to_sample

    def _draws_str(self) -> str:
        """Run-name suffix of the shared draw settings: ``-share_<row|batch>`` for shared
        negatives, then ``-logq`` with the logQ correction; empty for the defaults."""
        sharing = self.negatives_sharing
        shared = "" if sharing is NegativesSharing.NONE else f"-share_{sharing.value}"
        return shared + ("-logq" if self.logq_correction else "")

    def row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        """logits [c, 1 + R] (column 0 = positive, already / temperature), hits [c, R] -> [c]."""
        raise NotImplementedError

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
        supervised = supervised_positions(
            output_embeddings, supervision_embeddings, supervision_weights, negatives_sampler
        )
        if supervised is None:
            return output_embeddings.sum() * 0.0, {}
        rows, queries, positives = supervised.rows, supervised.queries, supervised.positives
        weights, batch_rows = supervised.weights, supervised.batch_rows
        slots, groups = self._draw(negatives_sampler, batch_rows, supervision_ids.shape[0])
        slot_offsets = None
        if self.logq_correction:  # -log q per slot of the candidate table [U]
            slot_offsets = -negatives_sampler.candidate_log_q().to(queries.dtype)
        losses, aux = sampled_losses(
            SampledRows(
                queries=queries,
                positives=positives,
                positive_ids=supervision_ids.reshape(-1).index_select(0, rows),
                slots=slots,
                groups=groups,
                sampler=negatives_sampler,
                similarity=similarity_module,
                user_ids=None if user_ids is None else user_ids.index_select(0, batch_rows),
                padded_queries=output_embeddings,
                rows=rows,
                temperature=self._temperature,
                checkpoint_chunk=self._chunk_size if self._activation_checkpoint else None,
                slot_offsets=slot_offsets,
            ),
            self.row_losses,
        )
        return (losses * weights).sum() / weights.sum(), aux

    def _draw(
        self, sampler: nn.Module, batch_rows: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Negative slots: [L, R] independent (groups None), or [G, R] shared with groups [L]."""
        if self.negatives_sharing is NegativesSharing.NONE:
            slots = sampler.draw_slots(batch_rows.shape[0], self._num_to_sample, batch_rows.device)
            return slots, None
        return sampler.draw_shared_slots(
            self.negatives_sharing, self._num_to_sample, batch_rows, batch_size
        )


@LOSSES.register("SampledSoftmaxLoss")
class SampledSoftmaxLoss(_SampledLoss):
    """Cross-entropy of the positive against itself plus ``num_to_sample`` sampled negatives.

    Per position: ``-log softmax([s+, s1, ..., sR] / T)[0]`` with accidental hits excluded.

    Args:
        num_to_sample: R negatives per position (``train_fn.num_negatives``).
        temperature: T, logits are divided by it (``train_fn.temperature``; 0.05 unless bound).
        activation_checkpoint: recompute each chunk's scores in backward to bound memory (the
            reference kernel; the fused dot-product kernels are chunked and bounded anyway).
        checkpoint_chunk_size: positions per checkpointed chunk.
        negatives_sharing: NONE (independent draws per position), ROW or BATCH (shared draws).
        logq_correction: subtract log q (the sampler's draw probability) from each negative's
            logit (``train_fn.logq_correction``).
    """

    def __init__(
        self,
        num_to_sample: int = 1,
        temperature: float = 0.05,
        activation_checkpoint: bool = False,
        checkpoint_chunk_size: int = 4096,
        negatives_sharing: NegativesSharing = NegativesSharing.NONE,
        logq_correction: bool = False,
    ) -> None:
        super().__init__(
            num_to_sample,
            temperature,
            activation_checkpoint,
            checkpoint_chunk_size,
            negatives_sharing,
            logq_correction,
        )

    # logits [c, 1 + R], hits [c, R] -> logsumexp(logits with hits at -inf) - logits[:, 0] [c].
    # The op itself (not a wrapper), so the kernels can recognise it and fuse it.
    row_losses = staticmethod(softmax_row_loss)

    def debug_str(self) -> str:
        return f"ssl-t{self._temperature:g}-n{self._num_to_sample}{self._draws_str()}"


# Under train_fn the logits are not scaled (the paper's BCE); an explicit train_fn.temperature other
# than 1.0 is refused rather than silently dropped. Direct users may still pass any temperature.
@LOSSES.register("BCELoss", fixed={"temperature": 1.0})
class BCELoss(_SampledLoss):
    """Binary cross-entropy: the positive labelled 1, one sampled negative labelled 0.

    Per position: ``softplus(-s+/T) + softplus(s-/T)``, the negative term dropped on an
    accidental hit (the negative equals the positive). With ``negatives_sharing`` BATCH one
    negative serves every position of the step; with ROW, one per batch row. With
    ``logq_correction`` the negative's logit is ``s-/T - log q`` before the softplus.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        activation_checkpoint: bool = False,
        checkpoint_chunk_size: int = 4096,
        negatives_sharing: NegativesSharing = NegativesSharing.NONE,
        logq_correction: bool = False,
    ) -> None:
        super().__init__(
            1,
            temperature,
            activation_checkpoint,
            checkpoint_chunk_size,
            negatives_sharing,
            logq_correction,
        )

    def row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        """``softplus(-s+) + softplus(s-)`` (the second term 0 on a hit) -> [c]."""
        positive = F.softplus(-logits[:, 0])
        negative = F.softplus(logits[:, 1]).masked_fill(hits[:, 0], 0.0)
        return positive + negative

    def debug_str(self) -> str:
        return f"bce-t{self._temperature:g}{self._draws_str()}"


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

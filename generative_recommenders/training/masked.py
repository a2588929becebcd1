"""The masked objective (``train_fn.objective = "masked"``): BERT4Rec's cloze task on any
bidirectional encoder.

Each training sequence is the user's window plus its target, ``s_0 .. s_L`` (L = ``length``).
Every position is masked independently with probability ``p`` (``masked.mask_prob``; BERT4Rec's
0.2 for MovieLens by default), and a row where none was drawn gets one uniformly chosen position
masked, so every sequence supervises at least one position. A masked position's id becomes
:data:`~generative_recommenders.modeling.encoders.base.MASK_ID`, its embedding the encoder's
learned ``mask_embedding`` and its rating 0, so nothing of the hidden item reaches the encoder.
The encoder attends bidirectionally (``causal=False``); the loss is the run's loss at the masked
positions, each supervised by its own hidden item:

    loss = sum_{t masked} w_t loss(h_t, s_t) / sum_{t masked} w_t

At evaluation (and in ``Recommender`` and the export) a mask token is appended after the history
and its state is the query (``training.inputs.encode_queries``).
"""

from __future__ import annotations

import torch
from torch import nn

from generative_recommenders.registry import OBJECTIVES
from generative_recommenders.training.inputs import EncoderInputs, mask_inputs
from generative_recommenders.training.model import AutoregressiveModel, WeightedLossFn


def draw_mask(
    ids: torch.Tensor, mask_prob: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ids [B, W] int64 (0 = padding) -> masked [B, W] bool: each non-padding position with
    probability ``mask_prob``, plus one uniformly chosen position in every row with none."""
    valid = ids != 0
    draws = torch.rand(ids.shape, device=ids.device, generator=generator)
    masked = (draws < mask_prob) & valid
    counts = valid.sum(dim=1)  # [B]
    # One position per row, uniform over its valid ones (histories are left-aligned).
    pick = torch.rand(ids.shape[0], device=ids.device, generator=generator)
    chosen = (pick * counts).to(torch.int64).clamp(max=(counts - 1).clamp(min=0))
    needs_one = ~masked.any(dim=1) & (counts > 0)
    forced = torch.zeros_like(masked).scatter_(1, chosen.view(-1, 1), needs_one.view(-1, 1))
    return masked | forced


@OBJECTIVES.register("masked", gin_name="masked")
class MaskedModel(AutoregressiveModel):
    """Masked-item prediction with bidirectional attention (see the module docstring).

    Args:
        encoder: a bidirectional encoder (built with ``causal=False``; it owns ``mask_embedding``).
        negatives_sampler, loss, weighted_loss_fn, loss_weights: as for the autoregressive one.
        mask_prob: p, the probability that a position is masked, in (0, 1).
    """

    causal = False  # the encoder attends to every non-padding position

    def __init__(
        self,
        encoder: nn.Module,
        negatives_sampler: nn.Module,
        loss: nn.Module,
        weighted_loss_fn: WeightedLossFn,
        loss_weights: dict[str, float],
        mask_prob: float = 0.2,
    ) -> None:
        if not 0.0 < float(mask_prob) < 1.0:
            raise ValueError(f"masked.mask_prob={mask_prob!r}: expected a probability in (0, 1)")
        if getattr(encoder, "causal", True):
            raise ValueError("the masked objective needs an encoder built with causal=False")
        super().__init__(encoder, negatives_sampler, loss, weighted_loss_fn, loss_weights)
        self.mask_prob = float(mask_prob)

    def forward(
        self, inputs: EncoderInputs
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (total loss, main loss detached, auxiliary losses detached)."""
        ids = inputs.ids  # [B, N + 1]: the window, then the target at position length
        masked = draw_mask(ids, self.mask_prob)  # [B, N + 1]
        outputs, embeddings = self.encode_masked(inputs, masked)
        flat_ids = ids.reshape(-1)
        self.negatives_sampler.process_batch(
            ids=flat_ids,
            presences=flat_ids != 0,
            embeddings=embeddings.reshape(-1, embeddings.shape[-1]),
        )
        main_loss, aux_losses = self.loss(
            lengths=inputs.lengths + 1,
            output_embeddings=outputs,
            supervision_ids=ids.masked_fill(~masked, 0),
            supervision_embeddings=embeddings,
            supervision_weights=masked.to(outputs.dtype),
            negatives_sampler=self.negatives_sampler,
            similarity_module=self.encoder.similarity,
            user_ids=inputs.user_ids,
        )
        return self.combine(main_loss, aux_losses)

    def encode_masked(
        self, inputs: EncoderInputs, masked: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs ([B, N + 1] with the target at ``length``), masked [B, N + 1] bool ->
        (encoder states [B, N + 1, D], the item table's rows of ``inputs.ids`` [B, N + 1, D]).

        Masked positions enter as (:data:`MASK_ID`, ``mask_embedding``, rating 0)."""
        embeddings = self.encoder.get_item_embeddings(inputs.ids)  # the hidden items' rows too
        hidden = mask_inputs(self.encoder, inputs, embeddings, masked)
        outputs = self.encoder(
            past_lengths=inputs.lengths + 1,  # the target is part of the sequence
            past_ids=hidden.ids,
            past_embeddings=hidden.embeddings,
            past_payloads=hidden.payloads,
        )
        return outputs, embeddings

    def debug_str(self) -> str:
        return f"masked-p{self.mask_prob:g}"

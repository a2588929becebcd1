"""The autoregressive objective (``train_fn.objective = "autoregressive"``, the default).

An objective is the training-time composition: encoder + negatives sampler + loss in one
``nn.Module``. Keeping the loss inside ``forward`` lets DistributedDataParallel see every parameter
that gets a gradient (item table, encoder, similarity module) in one forward call. Objectives
register by name (:data:`generative_recommenders.registry.OBJECTIVES`); the class attribute
``causal`` says which attention the encoder must use (see ``training/masked.py`` for the other).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from generative_recommenders.registry import OBJECTIVES
from generative_recommenders.training.inputs import EncoderInputs

WeightedLossFn = Callable[[torch.Tensor, dict[str, torch.Tensor], dict[str, float]], torch.Tensor]


@OBJECTIVES.register("autoregressive", gin_name="autoregressive")
class AutoregressiveModel(nn.Module):
    """Next-item prediction at every valid position of a history (causal encoder).

    Args:
        encoder: SASRec or HSTU (owns the item table and the similarity module).
        negatives_sampler: in-batch or local sampler.
        loss: SampledSoftmaxLoss or BCELoss.
        weighted_loss_fn: combines the main loss with auxiliary losses by ``loss_weights``.
        loss_weights: weight per auxiliary loss name (e.g. MoL's ``mi_loss``).
    """

    causal = True  # the encoder attends to earlier positions only

    def __init__(
        self,
        encoder: nn.Module,
        negatives_sampler: nn.Module,
        loss: nn.Module,
        weighted_loss_fn: WeightedLossFn,
        loss_weights: dict[str, float],
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.negatives_sampler = negatives_sampler
        self.loss = loss
        self._weighted_loss_fn = weighted_loss_fn
        self._loss_weights = dict(loss_weights)

    def forward(
        self, inputs: EncoderInputs
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (total loss, main loss detached, auxiliary losses detached)."""
        ids = inputs.ids  # [B, N + 1], target at position length
        embeddings = self.encoder.get_item_embeddings(ids)  # [B, N + 1, D]
        outputs = self.encoder(
            past_lengths=inputs.lengths,
            past_ids=ids,
            past_embeddings=embeddings,
            past_payloads=inputs.payloads,
        )  # [B, N + 1, D]
        flat_ids = ids.reshape(-1)
        self.negatives_sampler.process_batch(
            ids=flat_ids,
            presences=flat_ids != 0,
            embeddings=embeddings.reshape(-1, embeddings.shape[-1]),
        )
        supervision_ids = ids[:, 1:]
        main_loss, aux_losses = self.loss(
            lengths=inputs.lengths,
            output_embeddings=outputs[:, :-1, :],
            supervision_ids=supervision_ids,
            supervision_embeddings=embeddings[:, 1:, :],
            supervision_weights=(supervision_ids != 0).to(outputs.dtype),
            negatives_sampler=self.negatives_sampler,
            similarity_module=self.encoder.similarity,
            user_ids=inputs.user_ids,
        )
        return self.combine(main_loss, aux_losses)

    def combine(
        self, main_loss: torch.Tensor, aux_losses: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(total loss, main loss detached, auxiliary losses detached)."""
        total = self._weighted_loss_fn(main_loss, aux_losses, self._loss_weights)
        detached = {name: value.detach() for name, value in aux_losses.items()}
        return total, main_loss.detach(), detached

    def debug_str(self) -> str:
        return "ar"

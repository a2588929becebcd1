"""A pairwise hinge loss over the sampled negatives, registered from outside the package.

Per supervised position with query q, positive x+ and R sampled negatives x1..xR:

    loss = mean_r max(0, margin - s(q, x+) + s(q, xr))

with s the model's similarity (dot product or MoL) and negatives equal to the positive (accidental
hits) left out. Positions are averaged with their supervision weights, like the built-in losses.

Train it with ``python main.py --gin_config_file=examples/custom_loss.gin``: the gin file's
``import examples.custom_loss`` line imports this module, whose decorator registers the loss under
the name ``train_fn.loss_module`` selects. Its settings are its constructor's parameters: the run
offers ``num_to_sample`` (``train_fn.num_negatives``); ``margin`` is bound as
``PairwiseHingeLoss.margin``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from generative_recommenders.registry import LOSSES


@LOSSES.register("PairwiseHingeLoss")
class PairwiseHingeLoss(nn.Module):
    """max(0, margin - s+ + s-) averaged over R sampled negatives and the supervised positions.

    Args:
        num_to_sample: R negatives per position (``train_fn.num_negatives``).
        margin: how far the positive's score must exceed each negative's.
    """

    def __init__(self, num_to_sample: int = 16, margin: float = 0.5) -> None:
        super().__init__()
        if num_to_sample < 1 or margin <= 0:
            raise ValueError(
                f"need num_to_sample >= 1 and margin > 0, got {num_to_sample}, {margin}"
            )
        self.num_to_sample = int(num_to_sample)
        self.margin = float(margin)

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
        """[B, N, D] queries, [B, N] next ids and weights -> (scalar loss, auxiliary losses)."""
        supervised = supervision_weights > 0  # [B, N]
        queries = output_embeddings[supervised]  # [L, D]
        if queries.shape[0] == 0:
            return output_embeddings.sum() * 0.0, {}
        positive_ids = supervision_ids[supervised]  # [L]
        positives = negatives_sampler.normalize_embeddings(supervision_embeddings[supervised])
        weights = supervision_weights[supervised].to(queries.dtype)  # [L]
        slots = negatives_sampler.draw_slots(
            queries.shape[0], self.num_to_sample, queries.device
        )  # [L, R]
        negatives = negatives_sampler.make_lookup(slots.numel())(slots)  # [L, R, D]
        negative_ids = negatives_sampler.candidate_ids()[slots]  # [L, R]
        candidates = torch.cat([positives.unsqueeze(1), negatives.to(positives.dtype)], dim=1)
        row_users = None
        if user_ids is not None:  # one user id per position, for user-aware similarities
            row_users = user_ids.unsqueeze(1).expand_as(supervision_ids)[supervised]
        scores, aux = similarity_module(queries, candidates, row_users)  # [L, 1 + R]
        hinge = F.relu(self.margin - scores[:, :1] + scores[:, 1:])  # [L, R]
        hinge = hinge.masked_fill(negative_ids == positive_ids.unsqueeze(1), 0.0)
        return (hinge.mean(dim=1) * weights).sum() / weights.sum(), aux

    def debug_str(self) -> str:
        """The run-name part: every setting that changes the objective."""
        return f"hinge-m{self.margin:g}-n{self.num_to_sample}"

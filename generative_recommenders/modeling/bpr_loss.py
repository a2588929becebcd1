"""Bayesian personalised ranking (BPR) over sampled negatives.

Per supervised position, with the positive's logit s+ and R sampled negatives' logits s-_r (all
already divided by the temperature T), accidental hits (a negative equal to the positive) left out:

    loss = mean_{r not a hit} softplus(-(s+ - s-_r)) = mean_{r not a hit} -log sigmoid(s+ - s-_r)

A position whose negatives are all hits contributes 0. Sampling, chunking, shared negatives and
the weighted mean over positions are :class:`~generative_recommenders.modeling.losses._SampledLoss`'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generative_recommenders.modeling.losses import _SampledLoss
from generative_recommenders.modeling.negatives import NegativesSharing
from generative_recommenders.registry import LOSSES


@LOSSES.register("BPRLoss")
class BPRLoss(_SampledLoss):
    """BPR: the positive ranked above each sampled negative, averaged over the negatives.

    Args:
        num_to_sample: R negatives per position (``train_fn.num_negatives``; 1 unless bound, the
            original BPR's one negative per positive).
        temperature: T (``train_fn.temperature``; 1.0 unless bound, i.e. unscaled as in BPR).
        activation_checkpoint, checkpoint_chunk_size, negatives_sharing, logq_correction: as the
            sampled softmax (with the logQ correction, ``s-`` is the corrected logit).
    """

    def __init__(
        self,
        num_to_sample: int = 1,
        temperature: float = 1.0,
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

    def row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        """logits [c, 1 + R] (column 0 the positive), hits [c, R] -> [c]."""
        pairs = F.softplus(logits[:, 1:] - logits[:, :1]).masked_fill(hits, 0.0)  # [c, R]
        kept = (~hits).sum(dim=1).clamp(min=1).to(pairs.dtype)  # all hits: 0 / 1 = 0
        return pairs.sum(dim=1) / kept

    def debug_str(self) -> str:
        return f"bpr-t{self._temperature:g}-n{self._num_to_sample}{self._draws_str()}"

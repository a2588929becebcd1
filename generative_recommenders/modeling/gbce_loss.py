"""gBCE, the generalised binary cross-entropy of gSASRec (Petrov & Macdonald, RecSys'23).

With k = ``num_to_sample`` negatives drawn from a catalogue of |I| = X items, the sampling rate
is alpha = k / (X - 1) and the positive's probability is raised to the power

    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha),        0 <= t <= 1

(t = 0: beta = 1, plain BCE; t = 1: beta = alpha, fully calibrated). Per supervised position, with
logits already divided by the temperature and accidental hits (a negative equal to the positive)
left out:

    loss = -beta log sigmoid(s+) - sum_{r not a hit} log(1 - sigmoid(s-_r))
         =  beta softplus(-s+)   + sum_{r not a hit} softplus(s-_r)

Sampling, chunking, shared negatives and the weighted mean over positions are
:class:`~generative_recommenders.modeling.losses._SampledLoss`'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generative_recommenders.modeling.losses import _SampledLoss
from generative_recommenders.modeling.negatives import NegativesSharing
from generative_recommenders.registry import LOSSES


def gbce_beta(num_negatives: int, catalogue_size: int, t: float) -> float:
    """beta = alpha (t (1 - 1/alpha) + 1/alpha) with alpha = k / (|I| - 1) (see the module doc)."""
    alpha = num_negatives / (catalogue_size - 1)
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha)


@LOSSES.register("GBCELoss")
class GBCELoss(_SampledLoss):
    """gBCE over ``num_to_sample`` sampled negatives, calibrated by ``t``.

    Args:
        num_to_sample: k negatives per position (``train_fn.num_negatives``; 128 unless bound,
            gSASRec's ML-1M setting).
        t: calibration, 0 <= t <= 1 (0.75 by default, the gSASRec paper's).
        temperature: T (``train_fn.temperature``; 1.0 unless bound, i.e. unscaled as in gSASRec).
        catalogue_item_ids: [X] the catalogue (offered by the run); its size gives alpha. Required
            to compute the loss (a loss built only to check its settings may leave it out).
        activation_checkpoint, checkpoint_chunk_size, negatives_sharing, logq_correction: as the
            sampled softmax (with the logQ correction, the negatives' logits are the corrected ones).
    """

    def __init__(
        self,
        num_to_sample: int = 128,
        t: float = 0.75,
        temperature: float = 1.0,
        catalogue_item_ids: torch.Tensor | None = None,
        activation_checkpoint: bool = False,
        checkpoint_chunk_size: int = 4096,
        negatives_sharing: NegativesSharing = NegativesSharing.NONE,
        logq_correction: bool = False,
    ) -> None:
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"GBCELoss.t={t!r}: expected 0 <= t <= 1")
        super().__init__(
            num_to_sample,
            temperature,
            activation_checkpoint,
            checkpoint_chunk_size,
            negatives_sharing,
            logq_correction,
        )
        self._t = float(t)
        self.beta: float | None = None
        if catalogue_item_ids is not None:
            catalogue_size = int(catalogue_item_ids.numel())
            if catalogue_size < 2:
                raise ValueError(f"GBCELoss needs a catalogue of >= 2 items, got {catalogue_size}")
            self.beta = gbce_beta(self._num_to_sample, catalogue_size, self._t)

    def row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        """logits [c, 1 + R] (column 0 the positive), hits [c, R] -> [c]."""
        if self.beta is None:
            raise ValueError("GBCELoss needs catalogue_item_ids (its size gives beta)")
        positive = F.softplus(-logits[:, 0]) * self.beta
        negatives = F.softplus(logits[:, 1:]).masked_fill(hits, 0.0).sum(dim=1)
        return positive + negatives

    def debug_str(self) -> str:
        # t is gSASRec's calibration; a temperature other than 1 is named separately.
        temperature = "" if self._temperature == 1.0 else f"-temp{self._temperature:g}"
        return f"gbce-t{self._t:g}-n{self._num_to_sample}{temperature}{self._draws_str()}"

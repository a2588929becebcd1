"""``FormulaLoss``: a loss given as a formula over the sampled logits (see :mod:`.formula`).

Per supervised position, with the positive's logit ``s+`` and the negatives' logits ``s_j`` (after
the temperature; accidental hits excluded from every mean):

- a pairwise formula ``f(pos, neg)``: ``mean_j f(s+, s_j)``, e.g. BPR is ``softplus(neg - pos)``;
- a pointwise formula ``f(score, label)``: ``f(s+, 1) + mean_j f(s_j, 0)``, e.g. binary
  cross-entropy is ``softplus(-score) * label + softplus(score) * (1 - label)``.

It shares the sampled losses' jagged reduction, chunking, negatives and weighting; only the per-row
loss is the formula.
"""

from __future__ import annotations

import hashlib

import torch

from generative_recommenders.modeling.formula import Node, family, parse
from generative_recommenders.modeling.losses import _SampledLoss
from generative_recommenders.modeling.negatives import NegativesSharing
from generative_recommenders.registry import LOSSES


def row_losses(formula: Node, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """logits [c, 1 + R] (column 0 the positive), hits [c, R] bool -> per-row losses [c]."""
    positive, negatives = logits[:, :1], logits[:, 1:]
    keep = ~hits
    count = keep.sum(dim=1).clamp(min=1)
    if family(formula) == "pairwise":
        values = formula.evaluate({"pos": positive, "neg": negatives}).expand_as(negatives)
        return torch.where(keep, values, torch.zeros_like(values)).sum(dim=1) / count
    ones, zeros = torch.ones_like(positive), torch.zeros_like(negatives)
    positive_term = formula.evaluate({"score": positive, "label": ones}).expand_as(positive)
    negative_terms = formula.evaluate({"score": negatives, "label": zeros}).expand_as(negatives)
    negative_terms = torch.where(keep, negative_terms, torch.zeros_like(negative_terms))
    return positive_term[:, 0] + negative_terms.sum(dim=1) / count


@LOSSES.register("FormulaLoss")
class FormulaLoss(_SampledLoss):
    """The sampled loss whose per-position value is ``formula`` (text, parsed safely).

    Args:
        formula: e.g. ``"softplus(neg - pos)"``; see :mod:`generative_recommenders.modeling.formula`
            (bound as ``FormulaLoss.formula``).
        num_to_sample: R negatives per position (``train_fn.num_negatives``).
        temperature: T, logits are divided by it before the formula (``train_fn.temperature``;
            0.05 unless bound).
        activation_checkpoint, checkpoint_chunk_size, negatives_sharing, logq_correction: as
            :class:`~generative_recommenders.modeling.losses.SampledSoftmaxLoss` (with the logQ
            correction, ``neg`` is the corrected logit).

    Raises:
        FormulaError: the formula does not parse.
    """

    def __init__(
        self,
        formula: str | None = None,
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
        if not formula:
            raise ValueError(
                'FormulaLoss needs FormulaLoss.formula, e.g. FormulaLoss.formula = "softplus(neg - pos)"'
            )
        self.formula = parse(formula)

    def row_losses(self, logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
        """The formula per row: logits [c, 1 + R] (/ temperature), hits [c, R] -> [c]."""
        return row_losses(self.formula, logits, hits)

    def debug_str(self) -> str:
        digest = hashlib.sha1(self.formula.prefix().encode()).hexdigest()[:8]
        return f"formula{digest}-t{self._temperature:g}-n{self._num_to_sample}{self._draws_str()}"

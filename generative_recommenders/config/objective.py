"""Gin surface of the training objective and retrieval: ``get_weighted_loss`` and the legacy strings.

The paper's gin files name modules by string (``train_fn.loss_module = "SampledSoftmaxLoss"``,
``train_fn.sampling_strategy = "local"``, ``train_fn.top_k_method = "MIPSBruteForceTopK"``); they are
resolved once, through :func:`generative_recommenders.config.choices.choose`, whose error lists the accepted choices.
``train_fn.negatives_sharing`` ("none" | "row" | "batch") becomes a ``NegativesSharing`` likewise.
"""

from __future__ import annotations

import gin
import torch

from generative_recommenders.config.choices import UnknownChoiceError
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling import losses
from generative_recommenders.modeling.formula import FormulaError, parse
from generative_recommenders.modeling.formula_loss import FormulaLoss
from generative_recommenders.modeling.losses import BCELoss, SampledSoftmaxLoss
from generative_recommenders.modeling.negatives import (
    InBatchNegativesSampler,
    LocalNegativesSampler,
    NegativesSharing,
)
from generative_recommenders.retrieval.brute_force import MIPSBruteForceTopK, MoLBruteForceTopK

LOSS_MODULES: dict[str, type] = {
    "SampledSoftmaxLoss": SampledSoftmaxLoss,
    "BCELoss": BCELoss,
    "FormulaLoss": FormulaLoss,
}
SAMPLING_STRATEGIES: dict[str, type] = {
    "in-batch": InBatchNegativesSampler,
    "local": LocalNegativesSampler,
}
NEGATIVES_SHARING: dict[str, NegativesSharing] = {
    "none": NegativesSharing.NONE,
    "row": NegativesSharing.ROW,
    "batch": NegativesSharing.BATCH,
}
TOP_K_METHODS: dict[str, type] = {
    "MIPSBruteForceTopK": MIPSBruteForceTopK,
    "MoLBruteForceTopK": MoLBruteForceTopK,
}


@gin.configurable("get_weighted_loss")
def get_weighted_loss(
    main_loss: torch.Tensor,
    aux_losses: dict[str, torch.Tensor],
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """``main_loss + sum(weights[k] * aux_losses[k])``; see ``modeling.losses.get_weighted_loss``.

    ``weights`` comes from the ``get_weighted_loss.weights`` binding unless the caller passes it
    (an explicit argument wins over a binding, as always with gin); None means no auxiliary term.
    """
    try:
        return losses.get_weighted_loss(main_loss, aux_losses, dict(weights or {}))
    except ValueError as error:
        raise UnknownChoiceError(
            f"train_fn.loss_weights / get_weighted_loss.weights: {error}"
        ) from error


@gin.configurable("FormulaLoss")
def formula_loss_binding(formula: str | None = None) -> str | None:
    """``FormulaLoss.formula``: the formula of ``train_fn.loss_module = "FormulaLoss"``."""
    return formula


def formula_loss_formula() -> str:
    """The bound ``FormulaLoss.formula``, checked by the safe parser (never ``eval``).

    Raises:
        UserInputError: no formula bound, or one that does not parse (the message says where).
    """
    formula = formula_loss_binding()
    if not formula:
        raise UserInputError(
            'train_fn.loss_module="FormulaLoss" needs FormulaLoss.formula, '
            'e.g. FormulaLoss.formula = "softplus(neg - pos)"'
        )
    try:
        parse(formula)
    except FormulaError as error:
        raise UserInputError(f"FormulaLoss.formula={formula!r}: {error}") from error
    return formula

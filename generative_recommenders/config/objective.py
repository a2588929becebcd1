"""The training objective's settings and assembly: negatives sampler and loss, by registered name.

``train_fn.loss_module`` and ``train_fn.sampling_strategy`` name registered components
(:data:`generative_recommenders.registry.LOSSES` / ``SAMPLERS``). What the run offers them, by
constructor parameter name (a component takes the ones it names; the rest of its parameters are
its own gin bindings, ``<ClassName>.<parameter>``):

- a loss: ``num_to_sample`` (``train_fn.num_negatives``), ``temperature`` (``train_fn.temperature``),
  ``activation_checkpoint`` (``train_fn.loss_activation_checkpoint``), ``negatives_sharing``
  (``train_fn.negatives_sharing`` as a ``NegativesSharing``). The first three are offered only when
  bound, so a loss's own defaults apply otherwise (the sampled softmax's temperature is 0.05; BCE
  fixes 1.0 and refuses an explicit other value).
- a sampler: ``l2_norm`` (``train_fn.item_l2_norm``), ``l2_norm_eps`` (``train_fn.l2_norm_eps``),
  ``item_embedding_fn`` (ids -> embeddings of the current table) and ``catalogue_item_ids`` ([X]).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gin
import torch
from torch import nn

from generative_recommenders.config import components
from generative_recommenders.config.choices import UnknownChoiceError, choose
from generative_recommenders.config.components import Offer
from generative_recommenders.modeling import losses
from generative_recommenders.modeling.negatives import NegativesSharing
from generative_recommenders.registry import LOSSES, SAMPLERS

NEGATIVES_SHARING: dict[str, NegativesSharing] = {
    "none": NegativesSharing.NONE,
    "row": NegativesSharing.ROW,
    "batch": NegativesSharing.BATCH,
}


@dataclass(frozen=True)
class ObjectiveSettings:
    """``train_fn`` bindings of the objective. None means "the loss's own default"."""

    loss_module: str = "SampledSoftmaxLoss"
    sampling_strategy: str = "in-batch"
    num_negatives: int | None = None
    temperature: float | None = None
    loss_activation_checkpoint: bool | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    item_l2_norm: bool = False
    negatives_sharing: str = "none"

    def __post_init__(self) -> None:
        choose("train_fn.negatives_sharing", self.negatives_sharing, NEGATIVES_SHARING)
        # gin hands over its own mapping type; keep a plain dict (and never share the default).
        object.__setattr__(self, "loss_weights", dict(self.loss_weights or {}))


def loss_offers(settings: ObjectiveSettings, explicit: frozenset[str]) -> dict[str, Offer]:
    """Constructor parameter -> the run's value, for a loss (see the module docstring)."""

    def offer(binding: str, value: object) -> Offer:
        return Offer(f"train_fn.{binding}", value, binding in explicit)

    return {
        "num_to_sample": offer("num_negatives", settings.num_negatives),
        "temperature": offer("temperature", settings.temperature),
        "activation_checkpoint": offer(
            "loss_activation_checkpoint", settings.loss_activation_checkpoint
        ),
        "negatives_sharing": offer(
            "negatives_sharing", NEGATIVES_SHARING[settings.negatives_sharing]
        ),
    }


def sampler_offers(
    settings: ObjectiveSettings,
    explicit: frozenset[str],
    l2_norm_eps: float,
    item_embedding_fn: Callable[[torch.Tensor], torch.Tensor],
    catalogue: torch.Tensor,
) -> dict[str, Offer]:
    """Constructor parameter -> the run's value, for a negatives sampler."""
    return {
        "l2_norm": Offer(
            "train_fn.item_l2_norm", settings.item_l2_norm, "item_l2_norm" in explicit
        ),
        "l2_norm_eps": Offer("train_fn.l2_norm_eps", l2_norm_eps, False),
        "item_embedding_fn": Offer("item_embedding_fn", item_embedding_fn, False),
        "catalogue_item_ids": Offer("catalogue_item_ids", catalogue, False),
    }


def build_loss(settings: ObjectiveSettings, explicit: frozenset[str], used: set[str]) -> nn.Module:
    """The loss named by ``train_fn.loss_module``, from its offers and its own bindings."""
    return components.build(LOSSES, settings.loss_module, loss_offers(settings, explicit), used)


def build_sampler(
    settings: ObjectiveSettings,
    explicit: frozenset[str],
    used: set[str],
    *,
    l2_norm_eps: float,
    item_embedding_fn: Callable[[torch.Tensor], torch.Tensor],
    catalogue: torch.Tensor,
) -> nn.Module:
    """The sampler named by ``train_fn.sampling_strategy``."""
    offers = sampler_offers(settings, explicit, l2_norm_eps, item_embedding_fn, catalogue)
    return components.build(SAMPLERS, settings.sampling_strategy, offers, used)


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


__all__ = [
    "NEGATIVES_SHARING",
    "ObjectiveSettings",
    "build_loss",
    "build_sampler",
    "choose",
    "get_weighted_loss",
]

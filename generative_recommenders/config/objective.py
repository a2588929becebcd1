"""The training objective's settings and assembly: objective, negatives sampler and loss, by name.

``train_fn.objective``, ``train_fn.loss_module`` and ``train_fn.sampling_strategy`` name registered
components (:data:`generative_recommenders.registry.OBJECTIVES` / ``LOSSES`` / ``SAMPLERS``). What
the run offers them, by constructor parameter name (a component takes the ones it names; the rest
of its parameters are its own gin bindings, ``<gin name>.<parameter>``, e.g. ``masked.mask_prob``):

- an objective: ``encoder``, ``negatives_sampler``, ``loss``, ``weighted_loss_fn`` and
  ``loss_weights`` (``train_fn.loss_weights``). Its class attribute ``causal`` decides the encoder's
  attention (the encoder is offered ``causal``; one that cannot be bidirectional is refused).

- a loss: ``num_to_sample`` (``train_fn.num_negatives``), ``temperature`` (``train_fn.temperature``),
  ``activation_checkpoint`` (``train_fn.loss_activation_checkpoint``), ``negatives_sharing``
  (``train_fn.negatives_sharing`` as a ``NegativesSharing``), ``logq_correction``
  (``train_fn.logq_correction``). These are offered only when bound, so a loss's own defaults apply
  otherwise (the sampled softmax's temperature is 0.05; BCE fixes 1.0 and refuses an explicit
  other value). Also ``item_embedding_fn`` (ids -> embeddings of the current table),
  ``catalogue_item_ids`` ([X]), for a loss over the whole catalogue.
- a sampler: ``l2_norm`` (``train_fn.item_l2_norm``), ``l2_norm_eps`` (``train_fn.l2_norm_eps``),
  ``item_embedding_fn``, ``catalogue_item_ids`` ([X]) and ``item_counts`` ([max item id + 1] int64,
  the training split's interactions per item id; None when the store has none).

A sampler that fixes the number of negatives per position (an ``num_to_sample`` attribute, e.g.
the mixed sampler's ``num_in_batch + num_catalogue``) decides the loss's ``num_to_sample`` when
``train_fn.num_negatives`` is unbound; ``config/build.py`` refuses any other count in one line.
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
from generative_recommenders.registry import LOSSES, OBJECTIVES, SAMPLERS
from generative_recommenders.training import masked as _masked  # noqa: F401 (registration)
from generative_recommenders.training import model as _model  # noqa: F401 (registration)

NEGATIVES_SHARING: dict[str, NegativesSharing] = {
    "none": NegativesSharing.NONE,
    "row": NegativesSharing.ROW,
    "batch": NegativesSharing.BATCH,
}


@dataclass(frozen=True)
class ObjectiveSettings:
    """``train_fn`` bindings of the objective. None means "the loss's own default"."""

    objective: str = "autoregressive"
    loss_module: str = "SampledSoftmaxLoss"
    sampling_strategy: str = "in-batch"
    num_negatives: int | None = None
    temperature: float | None = None
    loss_activation_checkpoint: bool | None = None
    loss_weights: dict[str, float] = field(default_factory=dict)
    item_l2_norm: bool = False
    negatives_sharing: str = "none"
    logq_correction: bool | None = None

    def __post_init__(self) -> None:
        choose("train_fn.negatives_sharing", self.negatives_sharing, NEGATIVES_SHARING)
        # gin hands over its own mapping type; keep a plain dict (and never share the default).
        object.__setattr__(self, "loss_weights", dict(self.loss_weights or {}))


def loss_offers(
    settings: ObjectiveSettings,
    explicit: frozenset[str],
    item_embedding_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    catalogue: torch.Tensor | None = None,
    sampler_num_to_sample: int | None = None,
) -> dict[str, Offer]:
    """Constructor parameter -> the run's value, for a loss (see the module docstring).

    ``sampler_num_to_sample``: the count a sampler fixes, offered as ``num_to_sample`` when
    ``train_fn.num_negatives`` is unbound.
    """

    def offer(binding: str, value: object) -> Offer:
        return Offer(f"train_fn.{binding}", value, binding in explicit)

    num_to_sample = offer("num_negatives", settings.num_negatives)
    if settings.num_negatives is None and sampler_num_to_sample is not None:
        num_to_sample = Offer("train_fn.sampling_strategy", sampler_num_to_sample, False)

    return {
        "logq_correction": offer("logq_correction", settings.logq_correction),
        "item_embedding_fn": Offer("item_embedding_fn", item_embedding_fn, False),
        "catalogue_item_ids": Offer("catalogue_item_ids", catalogue, False),
        "num_to_sample": num_to_sample,
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
    item_counts: torch.Tensor | None = None,
) -> dict[str, Offer]:
    """Constructor parameter -> the run's value, for a negatives sampler."""
    return {
        "item_counts": Offer("item_counts", item_counts, False),
        "l2_norm": Offer(
            "train_fn.item_l2_norm", settings.item_l2_norm, "item_l2_norm" in explicit
        ),
        "l2_norm_eps": Offer("train_fn.l2_norm_eps", l2_norm_eps, False),
        "item_embedding_fn": Offer("item_embedding_fn", item_embedding_fn, False),
        "catalogue_item_ids": Offer("catalogue_item_ids", catalogue, False),
    }


def build_loss(
    settings: ObjectiveSettings,
    explicit: frozenset[str],
    used: set[str],
    item_embedding_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    catalogue: torch.Tensor | None = None,
    sampler_num_to_sample: int | None = None,
) -> nn.Module:
    """The loss named by ``train_fn.loss_module``, from its offers and its own bindings."""
    offers = loss_offers(settings, explicit, item_embedding_fn, catalogue, sampler_num_to_sample)
    return components.build(LOSSES, settings.loss_module, offers, used)


def objective_is_causal(settings: ObjectiveSettings) -> bool:
    """Whether ``train_fn.objective``'s encoder attends causally (its class's ``causal``)."""
    return bool(getattr(OBJECTIVES.get(settings.objective), "causal", True))


def build_objective(
    settings: ObjectiveSettings,
    explicit: frozenset[str],
    used: set[str],
    *,
    encoder: nn.Module,
    sampler: nn.Module,
    loss: nn.Module,
    weighted_loss_fn: Callable,
) -> nn.Module:
    """The objective named by ``train_fn.objective`` around the built encoder, sampler and loss."""
    offers = {
        "encoder": Offer("train_fn.main_module", encoder, False),
        "negatives_sampler": Offer("train_fn.sampling_strategy", sampler, False),
        "loss": Offer("train_fn.loss_module", loss, False),
        "weighted_loss_fn": Offer("get_weighted_loss", weighted_loss_fn, False),
        "loss_weights": Offer(
            "train_fn.loss_weights", settings.loss_weights, "loss_weights" in explicit
        ),
    }
    return components.build(OBJECTIVES, settings.objective, offers, used)


def build_sampler(
    settings: ObjectiveSettings,
    explicit: frozenset[str],
    used: set[str],
    *,
    l2_norm_eps: float,
    item_embedding_fn: Callable[[torch.Tensor], torch.Tensor],
    catalogue: torch.Tensor,
    item_counts: torch.Tensor | None = None,
) -> nn.Module:
    """The sampler named by ``train_fn.sampling_strategy``."""
    offers = sampler_offers(
        settings, explicit, l2_norm_eps, item_embedding_fn, catalogue, item_counts
    )
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
    "build_objective",
    "build_sampler",
    "objective_is_causal",
    "choose",
    "get_weighted_loss",
]

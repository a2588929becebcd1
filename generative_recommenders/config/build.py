"""A validated :class:`TrainConfig` and a store -> the trainer's parts, and the run's name.

Components are built by registered name (:mod:`.components`); each section's own module builds its
part (:mod:`.modeling`, :mod:`.objective`, :mod:`.data`, :mod:`.evaluation`). After building, the
checks that need every component at once run here: an explicit ``train_fn`` binding that no
component took, and bindings of components the run does not select, are refused in one line.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from generative_recommenders.config import components
from generative_recommenders.config.data import SPLIT_IGNORE_LAST_N, build_data
from generative_recommenders.config.evaluation import build_evaluate_fn
from generative_recommenders.config.modeling import build_encoder
from generative_recommenders.config.objective import (
    build_loss,
    build_objective,
    build_sampler,
    get_weighted_loss,
    loss_offers,
    objective_is_causal,
    sampler_offers,
)
from generative_recommenders.config.train import TrainConfig
from generative_recommenders.data.splits import training_item_counts
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError
from generative_recommenders.ops import kernels
from generative_recommenders.registry import ENCODERS, LOSSES, OBJECTIVES, SAMPLERS, SIMILARITIES
from generative_recommenders.training.distributed import DistributedContext
from generative_recommenders.training.trainer import RunData, Schedule, SplitData

_LOG = logging.getLogger(__name__)
MAX_RUN_NAME = 180  # leaves room for "-<date>" under the usual 255-byte file-name limit


@dataclass
class Components:
    """The model's parts, as the run builds them (``model``: the objective around the others)."""

    encoder: nn.Module
    sampler: nn.Module
    loss: nn.Module
    model: nn.Module


@dataclass
class BuiltTraining:
    model: nn.Module
    data: RunData
    evaluate_fn: Callable[[nn.Module, SplitData, int | None], dict[str, float]]
    schedule: Schedule
    run_prefix: str
    model_summary: str


def build_config_encoder(config: TrainConfig, max_item_id: int) -> nn.Module:
    """The encoder (item table, preprocessor, blocks, postprocessor, similarity) of ``config``."""
    return build_encoder(
        config.model,
        max_item_id=max_item_id,
        max_sequence_length=config.data.max_sequence_length,
        used=set(),
        causal=objective_is_causal(config.objective),
    )


def build_components(
    config: TrainConfig,
    max_item_id: int,
    catalogue: torch.Tensor,
    device: torch.device,
    item_counts: torch.Tensor | None = None,
) -> Components:
    """Encoder, sampler and loss of ``config``, with every cross-component check.

    Raises:
        UserInputError: a contradiction between bindings, or a component's refusal, in one line.
    """
    selected = _selected(config)
    for registry, name in selected.items():
        registry.entry(name)
        components.check_unselected(registry, name)
    used: set[str] = set()
    encoder = build_encoder(
        config.model,
        max_item_id=max_item_id,
        max_sequence_length=config.data.max_sequence_length,
        used=used,
        causal=objective_is_causal(config.objective),
        objective_binding=f"train_fn.objective={config.objective.objective!r}",
    )
    if config.model.main_module_bf16:
        encoder = encoder.to(torch.bfloat16)
    encoder = encoder.to(device)
    sampler = build_sampler(
        config.objective,
        config.explicit,
        used,
        l2_norm_eps=config.model.l2_norm_eps,
        item_embedding_fn=encoder.get_item_embeddings,
        catalogue=catalogue,
        item_counts=item_counts,
    )
    sampler_count = getattr(sampler, "num_to_sample", None)  # a sampler that fixes R
    _check_num_negatives(config, sampler, sampler_count)
    loss = build_loss(
        config.objective,
        config.explicit,
        used,
        item_embedding_fn=encoder.get_item_embeddings,
        catalogue=catalogue,
        sampler_num_to_sample=sampler_count,
    )
    _check_loss_count(config, sampler, sampler_count, loss)
    model = build_objective(
        config.objective,
        config.explicit,
        used,
        encoder=encoder,
        sampler=sampler,
        loss=loss,
        weighted_loss_fn=_weighted_loss,
    )
    offers = [
        *loss_offers(config.objective, config.explicit).values(),
        *sampler_offers(config.objective, config.explicit, 0.0, len, catalogue).values(),
    ]
    choices = ", ".join(f"{registry.binding}={name!r}" for registry, name in selected.items())
    components.check_all_used(offers, used, choices)
    return Components(encoder=encoder, sampler=sampler, loss=loss, model=model)


def _sampler_count_str(config: TrainConfig, sampler: nn.Module, count: int) -> str:
    """E.g. ``train_fn.sampling_strategy='mixed' draws MixedNegativesSampler.num_in_batch + ...``."""
    how = getattr(sampler, "num_to_sample_bindings", None)
    return (
        f"train_fn.sampling_strategy={config.objective.sampling_strategy!r} draws "
        f"{how() + ' = ' if callable(how) else ''}{count} negatives per position"
    )


def _check_num_negatives(config: TrainConfig, sampler: nn.Module, count: int | None) -> None:
    """An explicit ``train_fn.num_negatives`` must equal the count a sampler fixes."""
    bound = config.objective.num_negatives
    if count is None or bound is None or bound == count:
        return
    raise UserInputError(
        f"train_fn.num_negatives={bound!r} contradicts {_sampler_count_str(config, sampler, count)}"
        "; remove train_fn.num_negatives (the sampler's count is used) or make them agree"
    )


def _check_loss_count(
    config: TrainConfig, sampler: nn.Module, count: int | None, loss: nn.Module
) -> None:
    """The loss's R (its own binding, or one it fixes, e.g. BCE's 1) must equal the sampler's."""
    loss_count = getattr(loss, "num_to_sample", None)
    if count is None or loss_count is None or loss_count == count:
        return
    raise UserInputError(
        f"train_fn.loss_module={config.objective.loss_module!r} draws {loss_count} negatives per "
        f"position, but {_sampler_count_str(config, sampler, count)}; make them agree"
    )


def validate_choices(config: TrainConfig) -> None:
    """The checks that need no store: every name is registered, no unselected component is
    bound, and the loss builds (its settings, e.g. ``FormulaLoss.formula``, are valid).

    :func:`validate` (with the store) does all of this and builds the rest too.
    """
    for registry, name in _selected(config).items():
        registry.entry(name)
        components.check_unselected(registry, name)
    build_loss(config.objective, config.explicit, set())


def _selected(config: TrainConfig) -> dict:
    return {
        OBJECTIVES: config.objective.objective,
        ENCODERS: config.model.main_module,
        SIMILARITIES: config.model.interaction_module_type,
        LOSSES: config.objective.loss_module,
        SAMPLERS: config.objective.sampling_strategy,
    }


def validate(config: TrainConfig, store: SequenceStore) -> str:
    """Build everything once on the CPU (before any worker starts); returns the run prefix."""
    catalogue = torch.as_tensor(store.catalogue_item_ids(), dtype=torch.int64)
    parts = build_components(
        config, store.max_item_id, catalogue, torch.device("cpu"), store_item_counts(config, store)
    )
    return run_prefix(config, parts)


def store_item_counts(config: TrainConfig, store: SequenceStore) -> torch.Tensor | None:
    """[max item id + 1] int64: the training split's interactions per item id (the store's
    counts minus each user's held-out events under ``train_fn.eval_split``; see
    ``data.splits.training_item_counts``), for a sampler that takes ``item_counts``; None for
    the others (the counts cost a few reads per user)."""
    sampler = SAMPLERS.entry(config.objective.sampling_strategy).target
    if "item_counts" not in inspect.signature(sampler).parameters:
        return None
    ignore_last_n = SPLIT_IGNORE_LAST_N[config.schedule.eval_split][0]
    counts = training_item_counts(store.offsets, store.item_ids, store.item_counts(), ignore_last_n)
    return torch.as_tensor(counts, dtype=torch.int64)


def build_training(
    config: TrainConfig, store: SequenceStore, context: DistributedContext
) -> BuiltTraining:
    """Build model, loaders, evaluation and schedule for one rank."""
    device = context.device
    kernels.use(config.kernels)  # which ops implementations run in this process
    catalogue = torch.as_tensor(store.catalogue_item_ids(), dtype=torch.int64, device=device)
    counts = store_item_counts(config, store)
    counts = None if counts is None else counts.to(device)
    parts = build_components(config, store.max_item_id, catalogue, device, counts)
    model = parts.model
    seed = config.schedule.random_seed
    data = build_data(config.data, store, context, config.schedule.eval_split, seed)
    evaluate_fn = build_evaluate_fn(
        config.evaluation, store, parts.sampler, catalogue, device, seed
    )
    parameters = sum(p.numel() for p in parts.encoder.parameters())
    return BuiltTraining(
        model=model,
        data=data,
        evaluate_fn=evaluate_fn,
        schedule=config.schedule,
        run_prefix=run_prefix(config, parts),
        model_summary=f"{config.model.main_module}, {parameters:,} parameters",
    )


def _weighted_loss(
    main_loss: torch.Tensor, aux_losses: dict[str, torch.Tensor], weights: dict[str, float]
) -> torch.Tensor:
    """``train_fn.loss_weights`` when set; otherwise the ``get_weighted_loss.weights`` binding."""
    if weights:
        return get_weighted_loss(main_loss, aux_losses, weights=weights)
    return get_weighted_loss(main_loss, aux_losses)


def describe(module: nn.Module, fallback: str) -> str:
    """A component's own description (``debug_str()``), else its registered name."""
    debug_str = getattr(module, "debug_str", None)
    return str(debug_str()) if callable(debug_str) else fallback


def run_prefix(config: TrainConfig, parts: Components) -> str:
    """The run name without the date, from the components' own descriptions.

    Every choice that changes the model or the objective is in it: the item table, preprocessor,
    encoder, postprocessor, similarity, sampler and loss (with its temperature and negatives), then
    the optimiser, the seed and the protocol. A name longer than :data:`MAX_RUN_NAME` is cut and
    ends with a hash of the whole, so two different configurations never share a prefix.
    """
    encoder = parts.encoder
    model_parts = [
        describe(getattr(encoder, "embedding_module", nn.Identity()), "emb"),
        describe(getattr(encoder, "input_preproc", nn.Identity()), "pre"),
        describe(encoder, config.model.main_module),
        describe(getattr(encoder, "output_postproc", nn.Identity()), "post"),
        describe(getattr(encoder, "similarity", nn.Identity()), config.interaction_module_type),
        describe(parts.sampler, config.sampling_strategy),
        describe(parts.loss, config.loss_module),
    ]
    if config.objective.objective != "autoregressive":  # default runs keep their names
        model_parts.append(describe(parts.model, config.objective.objective))
    schedule = config.schedule
    parts_list = [
        *model_parts,
        f"b{config.local_batch_size}-lr{schedule.learning_rate:g}-wu{schedule.num_warmup_steps}"
        f"-wd{schedule.weight_decay:g}",
        f"s{schedule.random_seed}",
    ]
    if config.loss_weights:
        parts_list.append(
            "w" + "_".join(f"{k}{v:g}" for k, v in sorted(config.loss_weights.items()))
        )
    if config.model.main_module_bf16:
        parts_list.append("bf16")
    if config.eval_split == "valid":
        parts_list.append("valid")
    name = "-".join(parts_list).replace("/", "_").replace(" ", "")
    if len(name) > MAX_RUN_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_RUN_NAME - 11]}-{digest}"
    return name

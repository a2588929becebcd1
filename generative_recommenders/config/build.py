"""Turning a validated :class:`TrainConfig` and a store into the trainer's parts.

This is the one place where the legacy strings (``"HSTU"``, ``"local"``, ``"MIPSBruteForceTopK"``, ...)
become classes, through the mappings of :mod:`.modeling` and :mod:`.objective`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from generative_recommenders.config.choices import choose
from generative_recommenders.config.data import create_data_loader
from generative_recommenders.config.modeling import (
    EMBEDDINGS,
    ENCODERS,
    POSTPROCESSORS,
    SIMILARITIES,
    build_encoder,
)
from generative_recommenders.config.objective import (
    LOSS_MODULES,
    NEGATIVES_SHARING,
    SAMPLING_STRATEGIES,
    TOP_K_METHODS,
    formula_loss_formula,
    get_weighted_loss,
)
from generative_recommenders.config.train import TrainConfig
from generative_recommenders.data.dataset import SequenceDataset
from generative_recommenders.data.loader import set_loader_epoch
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.evaluation.evaluator import Evaluator
from generative_recommenders.ops import kernels
from generative_recommenders.retrieval import CandidateIndex
from generative_recommenders.training.distributed import DistributedContext
from generative_recommenders.training.inputs import encoder_inputs
from generative_recommenders.training.model import AutoregressiveModel
from generative_recommenders.training.trainer import RunData, Schedule, SplitData

_LOG = logging.getLogger(__name__)

# ignore_last_n of (training, selection, test) windows per protocol.
_SPLIT_IGNORE_LAST_N = {"test": (1, 0, None), "valid": (2, 1, 0)}
DEFAULT_QUERY_CHUNK = 1024


@dataclass
class BuiltTraining:
    model: AutoregressiveModel
    data: RunData
    evaluate_fn: Callable[[nn.Module, SplitData, int | None], dict[str, float]]
    schedule: Schedule
    run_prefix: str
    model_summary: str


def validate_choices(config: TrainConfig) -> None:
    """Check every string binding against its mapping, before any worker starts."""
    for binding, value, choices in (
        ("train_fn.main_module", config.main_module, ENCODERS),
        ("train_fn.interaction_module_type", config.interaction_module_type, SIMILARITIES),
        ("train_fn.embedding_module_type", config.embedding_module_type, EMBEDDINGS),
        ("train_fn.user_embedding_norm", config.user_embedding_norm, POSTPROCESSORS),
        ("train_fn.loss_module", config.loss_module, LOSS_MODULES),
        ("train_fn.sampling_strategy", config.sampling_strategy, SAMPLING_STRATEGIES),
        ("train_fn.negatives_sharing", config.negatives_sharing, NEGATIVES_SHARING),
        ("train_fn.top_k_method", config.top_k_method, TOP_K_METHODS),
    ):
        choose(binding, value, choices)
    if config.loss_module == "FormulaLoss":
        formula_loss_formula()
    kernels.check(config.kernels)


def build_config_encoder(config: TrainConfig, max_item_id: int) -> nn.Module:
    """The encoder (item table, preprocessor, blocks, postprocessor, similarity) of ``config``."""
    return build_encoder(
        main_module=config.main_module,
        max_item_id=max_item_id,
        max_sequence_length=config.max_sequence_length,
        gr_output_length=config.gr_output_length,
        item_embedding_dim=config.item_embedding_dim,
        dropout_rate=config.dropout_rate,
        user_embedding_norm=config.user_embedding_norm,
        l2_norm_eps=config.l2_norm_eps,
        interaction_module_type=config.interaction_module_type,
        embedding_module_type=config.embedding_module_type,
    )


def build_training(
    config: TrainConfig, store: SequenceStore, context: DistributedContext
) -> BuiltTraining:
    """Build model, loaders, evaluation and schedule for one rank."""
    device = context.device
    kernels.use(config.kernels)  # which ops implementations run in this process
    encoder = build_config_encoder(config, store.max_item_id)
    if config.main_module_bf16:
        encoder = encoder.to(torch.bfloat16)
    encoder = encoder.to(device)
    catalogue = torch.as_tensor(store.catalogue_item_ids(), dtype=torch.int64, device=device)
    sampler = _build_sampler(config, encoder, catalogue)
    loss = build_loss(config)
    model = AutoregressiveModel(
        encoder=encoder,
        negatives_sampler=sampler,
        loss=loss,
        weighted_loss_fn=_weighted_loss,
        loss_weights=config.loss_weights,
    )
    data = _build_data(config, store, context)
    evaluate_fn = _build_evaluate_fn(config, store, sampler, catalogue, device)
    parameters = sum(p.numel() for p in encoder.parameters())
    return BuiltTraining(
        model=model,
        data=data,
        evaluate_fn=evaluate_fn,
        schedule=_schedule(config),
        run_prefix=_run_prefix(config, encoder),
        model_summary=f"{config.main_module}, {parameters:,} parameters",
    )


def build_loss(config: TrainConfig) -> nn.Module:
    """The loss of ``train_fn.loss_module``, with ``train_fn.negatives_sharing`` applied."""
    loss_class = choose("train_fn.loss_module", config.loss_module, LOSS_MODULES)
    sharing = choose("train_fn.negatives_sharing", config.negatives_sharing, NEGATIVES_SHARING)
    if config.loss_module == "BCELoss":
        return loss_class(temperature=1.0, negatives_sharing=sharing)
    if config.loss_module == "FormulaLoss":
        return loss_class(
            formula=formula_loss_formula(),
            num_to_sample=config.num_negatives,
            softmax_temperature=config.temperature,
            activation_checkpoint=config.loss_activation_checkpoint,
            negatives_sharing=sharing,
        )
    return loss_class(
        num_to_sample=config.num_negatives,
        softmax_temperature=config.temperature,
        activation_checkpoint=config.loss_activation_checkpoint,
        negatives_sharing=sharing,
    )


def _weighted_loss(
    main_loss: torch.Tensor, aux_losses: dict[str, torch.Tensor], weights: dict[str, float]
) -> torch.Tensor:
    """``train_fn.loss_weights`` when set; otherwise the ``get_weighted_loss.weights`` binding."""
    if weights:
        return get_weighted_loss(main_loss, aux_losses, weights=weights)
    return get_weighted_loss(main_loss, aux_losses)


def _build_sampler(config: TrainConfig, encoder: nn.Module, catalogue: torch.Tensor) -> nn.Module:
    sampler_class = choose(
        "train_fn.sampling_strategy", config.sampling_strategy, SAMPLING_STRATEGIES
    )
    if config.sampling_strategy == "local":
        return sampler_class(
            item_embedding_fn=encoder.get_item_embeddings,
            catalogue_item_ids=catalogue,
            l2_norm=config.item_l2_norm,
            l2_norm_eps=config.l2_norm_eps,
        )
    return sampler_class(l2_norm=config.item_l2_norm, l2_norm_eps=config.l2_norm_eps)


def _dataset(config: TrainConfig, store: SequenceStore, ignore_last_n: int, train: bool):
    return SequenceDataset(
        store,
        max_sequence_length=config.max_sequence_length,
        ignore_last_n=ignore_last_n,
        positional_sampling_ratio=config.positional_sampling_ratio if train else 1.0,
        seed=config.random_seed,
    )


def _build_data(config: TrainConfig, store: SequenceStore, context: DistributedContext) -> RunData:
    train_n, selection_n, test_n = _SPLIT_IGNORE_LAST_N[config.eval_split]

    def split(ignore_last_n: int, train: bool) -> SplitData:
        dataset = _dataset(config, store, ignore_last_n, train)
        loader = create_data_loader(
            dataset,
            batch_size=config.local_batch_size if train else config.eval_batch_size,
            world_size=context.world_size,
            rank=context.rank,
            shuffle=train,
            random_seed=config.random_seed,
        )
        return SplitData(loader=loader, dataset=dataset)

    return RunData(
        train=split(train_n, train=True),
        selection=split(selection_n, train=False),
        test=split(test_n, train=False) if test_n is not None else None,
        set_epoch=set_loader_epoch,
    )


def _build_evaluate_fn(
    config: TrainConfig,
    store: SequenceStore,
    sampler: nn.Module,
    catalogue: torch.Tensor,
    device: torch.device,
) -> Callable[[nn.Module, SplitData, int | None], dict[str, float]]:
    top_k_class = choose("train_fn.top_k_method", config.top_k_method, TOP_K_METHODS)
    evaluator = Evaluator(
        filter_seen=config.filter_seen,
        sampled_negatives=config.sampled_eval,
        item_popularity=store.item_counts() if config.sampled_eval == "pop100" else None,
        seed=config.random_seed,
    )
    query_chunk = config.eval_user_max_batch_size or DEFAULT_QUERY_CHUNK

    def evaluate(encoder: nn.Module, split: SplitData, num_batches: int | None):
        item_embeddings = sampler.normalize_embeddings(encoder.get_item_embeddings(catalogue))
        retrieval = top_k_class(
            encoder.similarity,
            CandidateIndex(catalogue, item_embeddings.float()),
            query_chunk_size=query_chunk,
        )

        def query_fn(batch):
            inputs = encoder_inputs(batch.to(device), write_target_id=False)
            embeddings = encoder.get_item_embeddings(inputs.ids)
            return encoder.encode(
                past_lengths=inputs.lengths,
                past_ids=inputs.ids,
                past_embeddings=embeddings,
                past_payloads=inputs.payloads,
            ).float()

        seen_fn = split.dataset.seen_items if config.filter_seen == "all" else None
        return evaluator.evaluate(
            split.loader,
            query_fn=query_fn,
            retrieval=retrieval,
            seen_fn=seen_fn,
            num_batches=num_batches,
            device=device,
        )

    return evaluate


def _schedule(config: TrainConfig) -> Schedule:
    return Schedule(
        num_epochs=config.num_epochs,
        eval_interval=config.eval_interval,
        partial_eval_num_iters=config.partial_eval_num_iters,
        full_eval_every_n=config.full_eval_every_n,
        save_ckpt_every_n=config.save_ckpt_every_n,
        keep_last_n_checkpoints=config.keep_last_n_checkpoints,
        eval_split=config.eval_split,
        selection_metric=config.selection_metric,
        early_stopping_patience=config.early_stopping_patience,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        num_warmup_steps=config.num_warmup_steps,
        random_seed=config.random_seed,
        checkpoint_every_n_steps=config.checkpoint_every_n_steps,
        eval_every_n_steps=config.eval_every_n_steps,
        max_steps=config.max_steps,
        on_nonfinite_loss=config.on_nonfinite_loss,
    )


def _run_prefix(config: TrainConfig, encoder: nn.Module) -> str:
    """The paper-style run name (without the date): model, objective and optimiser settings."""
    parts = [
        encoder.debug_str(),
        f"{config.sampling_strategy}-{config.loss_module}-n{config.num_negatives}",
        f"t{config.temperature:g}",
        f"b{config.local_batch_size}-lr{config.learning_rate:g}-wu{config.num_warmup_steps}"
        f"-wd{config.weight_decay:g}",
        f"s{config.random_seed}",
    ]
    if config.main_module_bf16:
        parts.append("bf16")
    if config.negatives_sharing != "none":
        parts.append(f"share_{config.negatives_sharing}")
    if config.eval_split == "valid":
        parts.append("valid")
    return "-".join(parts).replace("/", "_")

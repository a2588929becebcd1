"""``train_fn``: the paper's gin binding surface, packed into one validated ``TrainConfig``.

Every parameter name and default of the paper's public ``train_fn`` is kept, so its gin files run
unchanged; the project's additions (``eval_split``, ``selection_metric``,
``early_stopping_patience``, ``filter_seen``, ``sampled_eval``, ``keep_last_n_checkpoints``,
``negatives_sharing``, ``kernels`` and the long-run settings ``checkpoint_every_n_steps``,
``eval_every_n_steps``, ``max_steps``, ``on_nonfinite_loss``) have defaults that keep the paper's
protocol.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import gin

EVAL_SPLITS = ("test", "valid")
FILTER_SEEN = ("window", "all")
USER_EMBEDDING_NORMS = ("l2_norm", "layer_norm")
SAMPLED_EVAL = (None, "uni100", "pop100")
ON_NONFINITE_LOSS = ("stop", "skip")


@dataclass(frozen=True)
class TrainConfig:
    """The operative training settings; field names are the ``train_fn.*`` binding names."""

    dataset_name: str = "ml-20m"
    max_sequence_length: int = 200
    positional_sampling_ratio: float = 1.0
    local_batch_size: int = 128
    eval_batch_size: int = 128
    eval_user_max_batch_size: int | None = None
    main_module: str = "SASRec"
    main_module_bf16: bool = False
    dropout_rate: float = 0.2
    user_embedding_norm: str = "l2_norm"
    sampling_strategy: str = "in-batch"
    loss_module: str = "SampledSoftmaxLoss"
    loss_weights: dict[str, float] = field(default_factory=dict)
    num_negatives: int = 1
    loss_activation_checkpoint: bool = False
    item_l2_norm: bool = False
    temperature: float = 0.05
    num_epochs: int = 101
    learning_rate: float = 1e-3
    num_warmup_steps: int = 0
    weight_decay: float = 1e-3
    top_k_method: str = "MIPSBruteForceTopK"
    eval_interval: int = 100
    full_eval_every_n: int = 1
    save_ckpt_every_n: int = 1000
    partial_eval_num_iters: int = 32
    embedding_module_type: str = "local"
    item_embedding_dim: int = 240
    interaction_module_type: str = "DotProduct"
    gr_output_length: int = 10
    l2_norm_eps: float = 1e-6
    enable_tf32: bool = False
    random_seed: int = 42
    # The project's additions.
    eval_split: str = "test"
    selection_metric: str = "ndcg@10"
    early_stopping_patience: int = 0
    filter_seen: str = "window"
    sampled_eval: str | None = None
    keep_last_n_checkpoints: int = 3
    negatives_sharing: str = "none"  # "none" | "row" | "batch"; checked by build.validate_choices
    kernels: str = "auto"  # "auto" | "reference" | a backend name (ops.kernels); checked there too
    # Long runs (docs/training.md): step counts, 0 = off.
    checkpoint_every_n_steps: int = 0
    eval_every_n_steps: int = 0
    max_steps: int = 0
    on_nonfinite_loss: str = "stop"

    def __post_init__(self) -> None:
        _check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        _check_choice("filter_seen", self.filter_seen, FILTER_SEEN)
        _check_choice("user_embedding_norm", self.user_embedding_norm, USER_EMBEDDING_NORMS)
        _check_choice("sampled_eval", self.sampled_eval, SAMPLED_EVAL)
        for name in ("max_sequence_length", "local_batch_size", "eval_batch_size", "num_epochs"):
            _check_positive(name, getattr(self, name))
        for name in ("full_eval_every_n", "partial_eval_num_iters", "item_embedding_dim"):
            _check_positive(name, getattr(self, name))
        if self.num_negatives < 1:
            raise ValueError(f"train_fn.num_negatives={self.num_negatives!r}: expected >= 1")
        if not 0.0 < self.positional_sampling_ratio <= 1.0:
            raise ValueError(
                f"train_fn.positional_sampling_ratio={self.positional_sampling_ratio!r}: "
                "expected a value in (0, 1]"
            )
        if self.early_stopping_patience < 0:
            raise ValueError("train_fn.early_stopping_patience: expected >= 0 (0 = never stop)")
        _check_choice("on_nonfinite_loss", self.on_nonfinite_loss, ON_NONFINITE_LOSS)
        for name in ("checkpoint_every_n_steps", "eval_every_n_steps", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"train_fn.{name}={value!r}: expected a step count >= 0 (0 = off)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_choice(name: str, value: object, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(
            f"train_fn.{name}={value!r} is not one of: {', '.join(map(repr, choices))}"
        )


def _check_positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"train_fn.{name}={value!r}: expected a positive integer")


@gin.configurable
def train_fn(
    dataset_name: str = TrainConfig.dataset_name,
    max_sequence_length: int = TrainConfig.max_sequence_length,
    positional_sampling_ratio: float = TrainConfig.positional_sampling_ratio,
    local_batch_size: int = TrainConfig.local_batch_size,
    eval_batch_size: int = TrainConfig.eval_batch_size,
    eval_user_max_batch_size: int | None = TrainConfig.eval_user_max_batch_size,
    main_module: str = TrainConfig.main_module,
    main_module_bf16: bool = TrainConfig.main_module_bf16,
    dropout_rate: float = TrainConfig.dropout_rate,
    user_embedding_norm: str = TrainConfig.user_embedding_norm,
    sampling_strategy: str = TrainConfig.sampling_strategy,
    loss_module: str = TrainConfig.loss_module,
    loss_weights: dict[str, float] | None = None,
    num_negatives: int = TrainConfig.num_negatives,
    loss_activation_checkpoint: bool = TrainConfig.loss_activation_checkpoint,
    item_l2_norm: bool = TrainConfig.item_l2_norm,
    temperature: float = TrainConfig.temperature,
    num_epochs: int = TrainConfig.num_epochs,
    learning_rate: float = TrainConfig.learning_rate,
    num_warmup_steps: int = TrainConfig.num_warmup_steps,
    weight_decay: float = TrainConfig.weight_decay,
    top_k_method: str = TrainConfig.top_k_method,
    eval_interval: int = TrainConfig.eval_interval,
    full_eval_every_n: int = TrainConfig.full_eval_every_n,
    save_ckpt_every_n: int = TrainConfig.save_ckpt_every_n,
    partial_eval_num_iters: int = TrainConfig.partial_eval_num_iters,
    embedding_module_type: str = TrainConfig.embedding_module_type,
    item_embedding_dim: int = TrainConfig.item_embedding_dim,
    interaction_module_type: str = TrainConfig.interaction_module_type,
    gr_output_length: int = TrainConfig.gr_output_length,
    l2_norm_eps: float = TrainConfig.l2_norm_eps,
    enable_tf32: bool = TrainConfig.enable_tf32,
    random_seed: int = TrainConfig.random_seed,
    eval_split: str = TrainConfig.eval_split,
    selection_metric: str = TrainConfig.selection_metric,
    early_stopping_patience: int = TrainConfig.early_stopping_patience,
    filter_seen: str = TrainConfig.filter_seen,
    sampled_eval: str | None = TrainConfig.sampled_eval,
    keep_last_n_checkpoints: int = TrainConfig.keep_last_n_checkpoints,
    negatives_sharing: str = TrainConfig.negatives_sharing,
    kernels: str = TrainConfig.kernels,
    checkpoint_every_n_steps: int = TrainConfig.checkpoint_every_n_steps,
    eval_every_n_steps: int = TrainConfig.eval_every_n_steps,
    max_steps: int = TrainConfig.max_steps,
    on_nonfinite_loss: str = TrainConfig.on_nonfinite_loss,
) -> TrainConfig:
    """Collect the ``train_fn.*`` bindings into a validated :class:`TrainConfig`.

    Raises:
        ValueError: a binding's value is outside its allowed set (the message names it).
    """
    values = dict(locals())
    values["loss_weights"] = dict(loss_weights or {})
    return TrainConfig(**values)

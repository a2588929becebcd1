"""The encoder's settings and its assembly: item table, preprocessor, encoder, postprocessor, similarity.

``train_fn.main_module`` and ``train_fn.interaction_module_type`` name registered components
(:data:`generative_recommenders.registry.ENCODERS` / ``SIMILARITIES``); their architectures are
their constructors' parameters, bound in gin under their names (``hstu_encoder.num_blocks``,
``sasrec_encoder.ffn_hidden_dim``, ``create_mol_interaction_module.temperature``, or your class
name). ``embedding_module_type`` and ``user_embedding_norm`` are resolved through the two small
mappings below, whose errors list the choices.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from generative_recommenders.config import components
from generative_recommenders.config.choices import UnknownChoiceError, choose  # noqa: F401
from generative_recommenders.config.components import Offer
from generative_recommenders.errors import UserInputError, check_positive
from generative_recommenders.modeling.embeddings import (
    CategoricalEmbeddingModule,
    LocalEmbeddingModule,
)
from generative_recommenders.modeling.encoders import hstu, sasrec  # noqa: F401 (registration)
from generative_recommenders.modeling.encoders.base import SequentialEncoder
from generative_recommenders.modeling.postprocessors import (
    L2NormEmbeddingPostprocessor,
    LayerNormEmbeddingPostprocessor,
)
from generative_recommenders.modeling.preprocessors import (
    LearnablePositionalEmbeddingInputFeaturesPreprocessor,
)
from generative_recommenders.modeling.similarity import dot_product, mol  # noqa: F401
from generative_recommenders.ops import kernels
from generative_recommenders.registry import ENCODERS, SIMILARITIES


@dataclass(frozen=True)
class ModelSettings:
    """``train_fn`` bindings of the encoder's assembly (the paper's names and defaults)."""

    main_module: str = "SASRec"
    main_module_bf16: bool = False
    dropout_rate: float = 0.2
    user_embedding_norm: str = "l2_norm"
    item_embedding_dim: int = 240
    embedding_module_type: str = "local"
    interaction_module_type: str = "DotProduct"
    gr_output_length: int = 10
    l2_norm_eps: float = 1e-6
    enable_tf32: bool = False
    # The ops implementations: "auto" | "reference" | a backend name (ops.kernels, docs/kernels.md).
    kernels: str = "auto"

    def __post_init__(self) -> None:
        # UnknownKernelsError is a ValueError naming the binding and the choices, like choose()'s.
        kernels.check(self.kernels)
        choose("train_fn.user_embedding_norm", self.user_embedding_norm, POSTPROCESSORS)
        choose("train_fn.embedding_module_type", self.embedding_module_type, EMBEDDINGS)
        check_positive("train_fn.item_embedding_dim", self.item_embedding_dim)


def _local_embeddings(
    max_item_id: int, dim: int, item_id_to_category_id: torch.Tensor | None
) -> nn.Module:
    return LocalEmbeddingModule(num_items=max_item_id, item_embedding_dim=dim)


def _categorical_embeddings(
    max_item_id: int, dim: int, item_id_to_category_id: torch.Tensor | None
) -> nn.Module:
    if item_id_to_category_id is None:
        raise UserInputError(
            "train_fn.embedding_module_type='categorical' needs an item_id_to_category_id mapping"
        )
    return CategoricalEmbeddingModule(max_item_id, dim, item_id_to_category_id)


EMBEDDINGS: dict[str, Callable[[int, int, torch.Tensor | None], nn.Module]] = {
    "local": _local_embeddings,
    "categorical": _categorical_embeddings,
}
POSTPROCESSORS: dict[str, Callable[[int, float], nn.Module]] = {
    "l2_norm": lambda dim, eps: L2NormEmbeddingPostprocessor(dim, eps=eps),
    "layer_norm": lambda dim, eps: LayerNormEmbeddingPostprocessor(dim, eps=1e-6),
}


def build_encoder(
    settings: ModelSettings,
    *,
    max_item_id: int,
    max_sequence_length: int,
    used: set[str],
    item_id_to_category_id: torch.Tensor | None = None,
    causal: bool = True,
    objective_binding: str = "train_fn.objective",
) -> SequentialEncoder:
    """Embedding, preprocessor, postprocessor, similarity and encoder, as the paper's trainer did.

    The positional table has ``max_sequence_length + gr_output_length + 1`` rows; the encoder gets
    ``max_output_len = gr_output_length + 1``. Architectures come from the components' bindings.
    ``causal=False`` (the objective needs bidirectional attention) is offered to the encoder's
    ``causal`` parameter; an encoder without one cannot be bidirectional and is refused, naming
    ``objective_binding``.
    """
    make_embeddings = choose(
        "train_fn.embedding_module_type", settings.embedding_module_type, EMBEDDINGS
    )
    make_postproc = choose(
        "train_fn.user_embedding_norm", settings.user_embedding_norm, POSTPROCESSORS
    )
    ENCODERS.entry(settings.main_module)  # fail before building anything
    dim = settings.item_embedding_dim
    similarity = components.build(
        SIMILARITIES,
        settings.interaction_module_type,
        {
            "query_embedding_dim": Offer("train_fn.item_embedding_dim", dim, False),
            "item_embedding_dim": Offer("train_fn.item_embedding_dim", dim, False),
        },
        used,
    )
    offers = {
        "max_sequence_len": Offer("train_fn.max_sequence_length", max_sequence_length, False),
        "max_output_len": Offer("train_fn.gr_output_length", settings.gr_output_length + 1, False),
        "embedding_dim": Offer("train_fn.item_embedding_dim", dim, False),
        "embedding_module": Offer(
            "train_fn.embedding_module_type",
            make_embeddings(max_item_id, dim, item_id_to_category_id),
            False,
        ),
        "similarity_module": Offer("train_fn.interaction_module_type", similarity, False),
        "input_features_preproc_module": Offer(
            "train_fn.dropout_rate",
            LearnablePositionalEmbeddingInputFeaturesPreprocessor(
                max_sequence_len=max_sequence_length + settings.gr_output_length + 1,
                embedding_dim=dim,
                dropout_rate=settings.dropout_rate,
            ),
            False,
        ),
        "output_postproc_module": Offer(
            "train_fn.user_embedding_norm", make_postproc(dim, settings.l2_norm_eps), False
        ),
        "verbose": Offer("verbose", True, False),
        "causal": Offer(objective_binding, causal, not causal),
    }
    if (
        not causal
        and "causal" not in inspect.signature(ENCODERS.get(settings.main_module)).parameters
    ):
        raise UserInputError(
            f"{objective_binding} needs an encoder that can attend bidirectionally, but "
            f"train_fn.main_module={settings.main_module!r} is causal only (its constructor "
            "takes no 'causal' parameter); choose SASRec or HSTU"
        )
    return components.build(ENCODERS, settings.main_module, offers, used)

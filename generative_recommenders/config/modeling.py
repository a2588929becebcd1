"""Gin-facing factories for the models, with the paper's binding names and defaults.

Configurables: ``sasrec_encoder``, ``hstu_encoder``, ``get_sequential_encoder``,
``get_similarity_function``, ``create_mol_interaction_module``. Each legacy string
(``main_module``, ``interaction_module_type``, ``embedding_module_type``, ``user_embedding_norm``)
is resolved through one mapping; an unknown value raises :class:`UnknownChoiceError`
(a ``ValueError`` and a ``UserInputError``) listing the valid choices. Unlike the paper's code,
the similarity factories return the module only (its ``debug_str()`` gives the run-name part).
"""

from __future__ import annotations

from collections.abc import Callable

import gin
import torch
from torch import nn

from generative_recommenders.config.choices import UnknownChoiceError, choose  # noqa: F401
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.embeddings import (
    CategoricalEmbeddingModule,
    LocalEmbeddingModule,
)
from generative_recommenders.modeling.encoders.base import SequentialEncoder
from generative_recommenders.modeling.encoders.hstu import HSTU
from generative_recommenders.modeling.encoders.sasrec import SASRec
from generative_recommenders.modeling.postprocessors import (
    L2NormEmbeddingPostprocessor,
    LayerNormEmbeddingPostprocessor,
)
from generative_recommenders.modeling.preprocessors import (
    LearnablePositionalEmbeddingInputFeaturesPreprocessor,
)
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.modeling.similarity.mol import MoLSimilarity


@gin.configurable
def sasrec_encoder(
    max_sequence_length: int,
    max_output_length: int,
    embedding_module: nn.Module,
    interaction_module: nn.Module,
    input_preproc_module: nn.Module,
    output_postproc_module: nn.Module,
    activation_checkpoint: bool,
    verbose: bool,
    num_blocks: int = 2,
    num_heads: int = 1,
    ffn_hidden_dim: int = 64,
    ffn_activation_fn: str = "relu",
    ffn_dropout_rate: float = 0.2,
) -> SASRec:
    return SASRec(
        max_sequence_len=max_sequence_length,
        max_output_len=max_output_length,
        embedding_dim=int(embedding_module.item_embedding_dim),
        num_blocks=num_blocks,
        num_heads=num_heads,
        ffn_hidden_dim=ffn_hidden_dim,
        ffn_activation_fn=ffn_activation_fn,
        ffn_dropout_rate=ffn_dropout_rate,
        embedding_module=embedding_module,
        similarity_module=interaction_module,
        input_features_preproc_module=input_preproc_module,
        output_postproc_module=output_postproc_module,
        activation_checkpoint=activation_checkpoint,
        verbose=verbose,
    )


@gin.configurable
def hstu_encoder(
    max_sequence_length: int,
    max_output_length: int,
    embedding_module: nn.Module,
    interaction_module: nn.Module,
    input_preproc_module: nn.Module,
    output_postproc_module: nn.Module,
    activation_checkpoint: bool,
    verbose: bool,
    num_blocks: int = 2,
    num_heads: int = 1,
    dqk: int = 64,
    dv: int = 64,
    linear_dropout_rate: float = 0.0,
    attn_dropout_rate: float = 0.0,
    normalization: str = "rel_bias",
    linear_config: str = "uvqk",
    linear_activation: str = "silu",
    concat_ua: bool = False,
    enable_relative_attention_bias: bool = True,
) -> HSTU:
    return HSTU(
        max_sequence_len=max_sequence_length,
        max_output_len=max_output_length,
        embedding_dim=int(embedding_module.item_embedding_dim),
        num_blocks=num_blocks,
        num_heads=num_heads,
        dqk=dqk,
        dv=dv,
        linear_dropout_rate=linear_dropout_rate,
        attn_dropout_rate=attn_dropout_rate,
        embedding_module=embedding_module,
        similarity_module=interaction_module,
        input_features_preproc_module=input_preproc_module,
        output_postproc_module=output_postproc_module,
        normalization=normalization,
        linear_config=linear_config,
        linear_activation=linear_activation,
        concat_ua=concat_ua,
        enable_relative_attention_bias=enable_relative_attention_bias,
        activation_checkpoint=activation_checkpoint,
        verbose=verbose,
    )


ENCODERS: dict[str, Callable[..., SequentialEncoder]] = {
    "SASRec": sasrec_encoder,
    "HSTU": hstu_encoder,
}


@gin.configurable
def get_sequential_encoder(
    module_type: str,
    max_sequence_length: int,
    max_output_length: int,
    embedding_module: nn.Module,
    interaction_module: nn.Module,
    input_preproc_module: nn.Module,
    output_postproc_module: nn.Module,
    verbose: bool,
    activation_checkpoint: bool = False,
) -> SequentialEncoder:
    """module_type "SASRec" | "HSTU"; architecture from the sasrec_encoder / hstu_encoder bindings."""
    factory = choose("train_fn.main_module", module_type, ENCODERS)
    return factory(
        max_sequence_length=max_sequence_length,
        max_output_length=max_output_length,
        embedding_module=embedding_module,
        interaction_module=interaction_module,
        input_preproc_module=input_preproc_module,
        output_postproc_module=output_postproc_module,
        activation_checkpoint=activation_checkpoint,
        verbose=verbose,
    )


@gin.configurable
def create_mol_interaction_module(
    query_embedding_dim: int,
    item_embedding_dim: int,
    dot_product_dimension: int = 64,
    query_dot_product_groups: int = 8,
    item_dot_product_groups: int = 4,
    temperature: float = 0.05,
    query_dropout_rate: float = 0.0,
    query_hidden_dim: int = 512,
    item_dropout_rate: float = 0.1,
    item_hidden_dim: int = -1,
    gating_query_hidden_dim: int = 128,
    gating_qi_hidden_dim: int = 128,
    gating_item_hidden_dim: int = 128,
    softmax_dropout_rate: float = 0.2,
    bf16_training: bool = False,
    gating_query_fn: bool = True,
    gating_item_fn: bool = True,
    dot_product_l2_norm: bool = True,
    query_nonlinearity: str = "geglu",
    item_nonlinearity: str = "geglu",
    uid_dropout_rate: float = 0.5,
    uid_embedding_hash_sizes: list[int] | None = None,
    uid_embedding_level_dropout: bool = False,
    gating_combination_type: str = "glu_silu",
    gating_item_dropout_rate: float = 0.0,
    gating_qi_dropout_rate: float = 0.0,
    eps: float = 1e-6,
    activation_checkpoint: bool = False,
) -> MoLSimilarity:
    """MoL; defaults of the groups/dims/temperature are the published ML-1M MoL setting's."""
    return MoLSimilarity(
        query_embedding_dim=query_embedding_dim,
        item_embedding_dim=item_embedding_dim,
        dot_product_dimension=dot_product_dimension,
        query_dot_product_groups=query_dot_product_groups,
        item_dot_product_groups=item_dot_product_groups,
        temperature=temperature,
        query_dropout_rate=query_dropout_rate,
        query_hidden_dim=query_hidden_dim,
        item_dropout_rate=item_dropout_rate,
        item_hidden_dim=item_hidden_dim,
        gating_query_hidden_dim=gating_query_hidden_dim,
        gating_qi_hidden_dim=gating_qi_hidden_dim,
        gating_item_hidden_dim=gating_item_hidden_dim,
        softmax_dropout_rate=softmax_dropout_rate,
        bf16_training=bf16_training,
        gating_query_fn=gating_query_fn,
        gating_item_fn=gating_item_fn,
        dot_product_l2_norm=dot_product_l2_norm,
        query_nonlinearity=query_nonlinearity,
        item_nonlinearity=item_nonlinearity,
        uid_dropout_rate=uid_dropout_rate,
        uid_embedding_hash_sizes=list(uid_embedding_hash_sizes or []),
        uid_embedding_level_dropout=uid_embedding_level_dropout,
        gating_combination_type=gating_combination_type,
        gating_item_dropout_rate=gating_item_dropout_rate,
        gating_qi_dropout_rate=gating_qi_dropout_rate,
        eps=eps,
        activation_checkpoint=activation_checkpoint,
    )


def _dot_product(**_: object) -> DotProductSimilarity:
    # Parameter-free: bf16 and activation checkpointing have nothing to act on.
    return DotProductSimilarity()


SIMILARITIES: dict[str, Callable[..., nn.Module]] = {
    "DotProduct": _dot_product,
    "MoL": create_mol_interaction_module,
}


@gin.configurable
def get_similarity_function(
    module_type: str,
    query_embedding_dim: int,
    item_embedding_dim: int,
    bf16_training: bool = False,
    activation_checkpoint: bool = False,
) -> nn.Module:
    """module_type "DotProduct" | "MoL" (MoL's own settings via create_mol_interaction_module)."""
    factory = choose("train_fn.interaction_module_type", module_type, SIMILARITIES)
    return factory(
        query_embedding_dim=query_embedding_dim,
        item_embedding_dim=item_embedding_dim,
        bf16_training=bf16_training,
        activation_checkpoint=activation_checkpoint,
    )


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
    *,
    main_module: str,
    max_item_id: int,
    max_sequence_length: int,
    gr_output_length: int,
    item_embedding_dim: int,
    dropout_rate: float,
    user_embedding_norm: str,
    l2_norm_eps: float,
    interaction_module_type: str,
    embedding_module_type: str,
    item_id_to_category_id: torch.Tensor | None = None,
) -> SequentialEncoder:
    """Embedding, preprocessor, postprocessor, similarity and encoder, as the paper's trainer did.

    The positional table has ``max_sequence_length + gr_output_length + 1`` rows; the encoder gets
    ``max_output_length = gr_output_length + 1``. Architecture settings come from gin.
    """
    make_embeddings = choose("train_fn.embedding_module_type", embedding_module_type, EMBEDDINGS)
    make_postproc = choose("train_fn.user_embedding_norm", user_embedding_norm, POSTPROCESSORS)
    choose("train_fn.main_module", main_module, ENCODERS)  # fail before building anything
    embeddings = make_embeddings(max_item_id, item_embedding_dim, item_id_to_category_id)
    return get_sequential_encoder(
        module_type=main_module,
        max_sequence_length=max_sequence_length,
        max_output_length=gr_output_length + 1,
        embedding_module=embeddings,
        interaction_module=get_similarity_function(
            module_type=interaction_module_type,
            query_embedding_dim=item_embedding_dim,
            item_embedding_dim=item_embedding_dim,
        ),
        input_preproc_module=LearnablePositionalEmbeddingInputFeaturesPreprocessor(
            max_sequence_len=max_sequence_length + gr_output_length + 1,
            embedding_dim=item_embedding_dim,
            dropout_rate=dropout_rate,
        ),
        output_postproc_module=make_postproc(item_embedding_dim, l2_norm_eps),
        verbose=True,
    )

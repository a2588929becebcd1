"""Gin factories, build_encoder, the paper's ML-1M parameter counts and a full-size step."""

import inspect

import gin
import pytest
import torch

from benchmarks.param_counts import build_ml1m, count_parameters
from generative_recommenders.config.components import configurable
from generative_recommenders.config.modeling import (
    ModelSettings,
    UnknownChoiceError,
    build_encoder,
)
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.encoders.hstu import HSTU
from generative_recommenders.modeling.encoders.sasrec import SASRec
from generative_recommenders.modeling.postprocessors import LayerNormEmbeddingPostprocessor
from generative_recommenders.modeling.similarity.mol import MoLSimilarity
from generative_recommenders.registry import SIMILARITIES

D, ITEMS, POSITIONS = 50, 3952, 200 + 10 + 1


def sasrec_count(blocks, ffn):
    mha = 4 * D * D + 4 * D  # in-projection 3D x D + 3D, out-projection D x D + D
    ffn_params = D * ffn + ffn + ffn * D + D
    return blocks * (mha + ffn_params)  # the layer norms have no learned parameters


def hstu_count(blocks, heads, dqk, dv):
    uvqk = D * heads * (2 * dv + 2 * dqk)  # no bias; the block's layer norms have no weights
    out = heads * dv * D + D
    rab = (128 + 1) + (2 * POSITIONS - 1)  # time buckets 0..128, relative positions
    return blocks * (uvqk + out + rab)


SHARED = (ITEMS + 1) * D + POSITIONS * D  # item table + positional table


def _build(max_sequence_length=8, max_item_id=20, **settings):
    """build_encoder from train_fn-style settings (the ModelSettings section)."""
    model = ModelSettings(**settings)
    return build_encoder(
        model, max_item_id=max_item_id, max_sequence_length=max_sequence_length, used=set()
    )


@pytest.mark.parametrize(
    "name,expected",
    [
        ("SASRec", SHARED + sasrec_count(2, 50)),
        ("HSTU", SHARED + hstu_count(2, 1, 50, 50)),
        ("HSTU-large", SHARED + hstu_count(8, 2, 25, 25)),
    ],
)
def test_ml1m_parameter_counts_match_the_architecture(name, expected):
    assert count_parameters(build_ml1m(name)) == expected


def test_ml1m_settings_forward_and_backward_on_a_full_size_batch():
    torch.manual_seed(0)
    B, N = 128, 200
    lengths = torch.randint(1, N + 1, (B,))
    ids = torch.randint(1, ITEMS + 1, (B, N)) * (torch.arange(N) < lengths.unsqueeze(1))
    ts = torch.cumsum(torch.randint(1, 10_000, (B, N)), dim=1)
    for name in ("SASRec", "HSTU", "HSTU-large"):
        model = build_ml1m(name).train()
        out = model(lengths, ids, model.get_item_embeddings(ids), {"timestamps": ts})
        assert out.shape == (B, N, D) and torch.isfinite(out).all()
        (out[:, :, 0].sum() + out.pow(3).mean()).backward()
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name


def test_gin_bindings_reach_the_encoder_and_mol():
    gin.clear_config()
    gin.parse_config(
        """
        hstu_encoder.num_blocks = 3
        hstu_encoder.normalization = "softmax_rel_bias"
        create_mol_interaction_module.query_dot_product_groups = 4
        create_mol_interaction_module.item_dot_product_groups = 2
        create_mol_interaction_module.uid_embedding_hash_sizes = [17]
        """
    )
    try:
        model = _build(
            main_module="HSTU",
            gr_output_length=2,
            item_embedding_dim=16,
            dropout_rate=0.0,
            user_embedding_norm="layer_norm",
            l2_norm_eps=1e-6,
            interaction_module_type="MoL",
            embedding_module_type="local",
        )
    finally:
        gin.clear_config()
    assert isinstance(model, HSTU) and len(model.blocks) == 3
    assert model.normalization == "softmax_rel_bias"
    assert model.input_preproc.pos_emb.weight.shape == (8 + 2 + 1, 16)
    assert isinstance(model.output_postproc, LayerNormEmbeddingPostprocessor)
    assert isinstance(model.similarity, MoLSimilarity)
    assert (model.similarity.P, model.similarity.Q) == (4, 2)
    assert model.similarity.uid_embedding_hash_sizes == [17]
    assert model.blocks[0].relative_bias.pos_w.numel() == 2 * 11 - 1


def test_sasrec_defaults_and_dot_product():
    gin.clear_config()
    model = _build(
        main_module="SASRec",
        gr_output_length=2,
        item_embedding_dim=16,
        dropout_rate=0.0,
        user_embedding_norm="l2_norm",
        l2_norm_eps=1e-6,
        interaction_module_type="DotProduct",
        embedding_module_type="local",
    )
    assert isinstance(model, SASRec) and len(model.blocks) == 2
    assert model.ffn_hidden_dim == 64 and model.ffn_dropout_rate == 0.2
    assert model.similarity.debug_str() == "dot"


@pytest.mark.parametrize(
    "field,value",
    [
        ("main_module", "NoSuchEncoder"),
        ("interaction_module_type", "Cosine"),
        ("embedding_module_type", "remote"),
        ("user_embedding_norm", "none"),
    ],
)
def test_unknown_choices_list_the_valid_ones(field, value):
    kwargs = dict(
        main_module="HSTU",
        gr_output_length=2,
        item_embedding_dim=16,
        dropout_rate=0.0,
        user_embedding_norm="l2_norm",
        l2_norm_eps=1e-6,
        interaction_module_type="DotProduct",
        embedding_module_type="local",
    )
    kwargs[field] = value
    with pytest.raises(UnknownChoiceError, match=f"{field}={value!r}.*is not one of") as err:
        _build(**kwargs)
    assert isinstance(err.value, ValueError) and isinstance(err.value, UserInputError)


def test_mol_factory_exposes_every_reference_binding():
    names = (
        "dot_product_dimension query_dot_product_groups item_dot_product_groups temperature "
        "query_dropout_rate query_hidden_dim item_dropout_rate item_hidden_dim "
        "gating_query_hidden_dim gating_qi_hidden_dim gating_item_hidden_dim "
        "softmax_dropout_rate bf16_training gating_query_fn gating_item_fn dot_product_l2_norm "
        "query_nonlinearity item_nonlinearity uid_dropout_rate uid_embedding_hash_sizes "
        "uid_embedding_level_dropout gating_combination_type gating_item_dropout_rate "
        "gating_qi_dropout_rate eps"
    ).split()
    params = inspect.signature(configurable(SIMILARITIES, "MoL")).parameters
    assert set(names) <= set(params)
    mol = configurable(SIMILARITIES, "MoL")(query_embedding_dim=8, item_embedding_dim=8)
    assert mol.debug_str().startswith("MoL-8x4x64-t0.05")

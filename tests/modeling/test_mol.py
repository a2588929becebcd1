"""Mixture-of-Logits similarity."""

import math

import pytest
import torch
import torch.nn.functional as F

from generative_recommenders.modeling.similarity.mol import (
    MoLSimilarity,
    mutual_information_loss,
)


def build(**overrides) -> MoLSimilarity:
    args = dict(
        query_embedding_dim=6,
        item_embedding_dim=5,
        dot_product_dimension=4,
        query_dot_product_groups=3,
        item_dot_product_groups=2,
        temperature=0.5,
        query_hidden_dim=8,
        item_hidden_dim=-1,
        gating_query_hidden_dim=7,
        gating_qi_hidden_dim=7,
        gating_item_hidden_dim=7,
        softmax_dropout_rate=0.2,
        query_nonlinearity="swiglu",
        uid_embedding_hash_sizes=[11],
        uid_dropout_rate=0.5,
    )
    args.update(overrides)
    return MoLSimilarity(**args)


def test_shapes_aux_losses_and_gradients():
    torch.manual_seed(0)
    mol = build().train()
    q, users = torch.randn(4, 6), torch.tensor([3, 14, 25, 0])
    scores, aux = mol(q, torch.randn(4, 9, 5), users)
    assert scores.shape == (4, 9)
    shared, _ = mol(q, torch.randn(12, 5), users)
    assert shared.shape == (4, 12)
    assert set(aux) == {"mi_loss", "uid_embedding_l2_norm"}
    (scores.sum() + aux["mi_loss"] + aux["uid_embedding_l2_norm"]).backward()
    for name, param in mol.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_degenerate_single_component_is_a_scaled_dot_product():
    torch.manual_seed(0)
    mol = build(
        query_dot_product_groups=1,
        item_dot_product_groups=1,
        query_hidden_dim=-1,
        uid_embedding_hash_sizes=None,
        gating_query_fn=False,
        gating_item_fn=False,
        dot_product_l2_norm=False,
    ).eval()
    q, x = torch.randn(3, 6), torch.randn(7, 5)
    scores, _ = mol(q, x)
    fq = mol.query_proj[1](q)
    gx = mol.item_proj[1](x)
    torch.testing.assert_close(scores, fq @ gx.T / 0.5)


def test_per_query_and_shared_candidates_agree_and_prepared_scoring_matches():
    torch.manual_seed(0)
    mol = build(gating_combination_type="none").eval()
    q, x, users = torch.randn(3, 6), torch.randn(5, 5), torch.tensor([1, 2, 30])
    shared, _ = mol(q, x, users)
    per_query, _ = mol(q, x.unsqueeze(0).expand(3, -1, -1), users)
    torch.testing.assert_close(shared, per_query)
    q_state = mol.prepare_queries(q, users)
    x_state = mol.prepare_items(x)
    torch.testing.assert_close(mol.score_prepared(q_state, x_state), shared)
    # States are sliceable along their first dimension (retrieval chunks both sides).
    chunk = mol.score_prepared(tuple(t[1:] for t in q_state), tuple(t[2:4] for t in x_state))
    torch.testing.assert_close(chunk, shared[1:, 2:4])


def test_glu_silu_gating_matches_its_formula():
    torch.manual_seed(0)
    mol = build(uid_embedding_hash_sizes=None, softmax_dropout_rate=0.0).eval()
    q, x = torch.randn(2, 6), torch.randn(3, 5)
    scores, _ = mol(q, x)
    fq = F.normalize(mol.query_proj(q).view(2, 3, 4), dim=-1)
    gx = F.normalize(mol.item_proj(x).view(3, 2, 4), dim=-1)
    logits = torch.einsum("bpd,xqd->bxpq", fq, gx).reshape(2, 3, 6) / 0.5
    g = F.silu(mol.gating_query(q)[:, None] * mol.gating_item(x)[None] + mol.gating_qi(logits))
    torch.testing.assert_close(scores, (torch.softmax(g, -1) * logits).sum(-1))


def test_uid_embeddings_hash_and_l2_penalty():
    torch.manual_seed(0)
    mol = build(uid_embedding_hash_sizes=[11, 5]).eval()
    users = torch.tensor([3, 14, 27])
    _, aux = mol(torch.randn(3, 6), torch.randn(4, 5), users)
    rows = [mol.uid_tables[0].weight[users % 11], mol.uid_tables[1].weight[users % 5]]
    want = sum((r * r).sum(-1) for r in rows).mean()
    torch.testing.assert_close(aux["uid_embedding_l2_norm"], want)
    with pytest.raises(ValueError, match="user_ids"):
        mol(torch.randn(3, 6), torch.randn(4, 5))


def test_mutual_information_loss_on_hand_made_gates():
    k = 4
    uniform = torch.full((10, k), 1.0 / k)
    assert abs(float(mutual_information_loss(uniform))) < 1e-5
    # Confident and balanced: each pair one-hot, components used equally -> -log k (the optimum).
    one_hot = torch.eye(k).repeat(3, 1)
    assert math.isclose(float(mutual_information_loss(one_hot)), -math.log(k), rel_tol=1e-4)
    # Confident but collapsed onto one component -> 0.
    collapsed = torch.zeros(8, k)
    collapsed[:, 0] = 1
    assert abs(float(mutual_information_loss(collapsed))) < 1e-4


def test_rejects_unknown_choices():
    with pytest.raises(ValueError, match="expected one of"):
        build(gating_combination_type="max")
    with pytest.raises(ValueError, match="expected one of"):
        build(query_nonlinearity="relu")
    with pytest.raises(ValueError, match="query_dot_product_groups"):
        build(query_dot_product_groups=1, uid_embedding_hash_sizes=[3])

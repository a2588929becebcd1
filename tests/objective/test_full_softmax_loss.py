"""FullSoftmaxLoss against the plain per-position formula; chunked equals unchunked."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.modeling.full_softmax_loss import FullSoftmaxLoss
from generative_recommenders.modeling.negatives import LocalNegativesSampler
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.modeling.similarity.mol import MoLSimilarity
from generative_recommenders.ops import kernels

B, N, D, X = 3, 5, 4, 9  # item ids 1..X, 0 = padding


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, X + 1, (B, N), generator=gen)
    weights = torch.rand(B, N, generator=gen, dtype=torch.float64) + 0.5
    weights[0, 3:] = 0.0  # padding rows: weight 0, id 0
    weights[2, 1:] = 0.0
    ids[weights == 0] = 0
    table = torch.randn(X + 1, D, generator=gen, dtype=torch.float64).requires_grad_(True)
    outputs = torch.randn(B, N, D, generator=gen, dtype=torch.float64).requires_grad_(True)
    return ids, weights, table, outputs


def _similarity(kind: str) -> torch.nn.Module:
    if kind == "dot":
        return DotProductSimilarity()
    torch.manual_seed(3)
    mol = MoLSimilarity(
        D,
        D,
        dot_product_dimension=3,
        query_dot_product_groups=2,
        item_dot_product_groups=2,
        query_hidden_dim=6,
        uid_embedding_hash_sizes=[5],
    ).double()
    return mol.eval()  # no dropout: the formula and the loss draw nothing


def _sampler(l2: bool) -> LocalNegativesSampler:
    return LocalNegativesSampler(
        item_embedding_fn=lambda ids: ids, catalogue_item_ids=torch.arange(1, X + 1),
        l2_norm=l2, l2_norm_eps=1e-6,
    )  # fmt: skip


def _normalise(x: torch.Tensor, on: bool) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6) if on else x


def _loss(loss_module, ids, weights, table, outputs, similarity, l2, users):
    return loss_module(
        lengths=(ids != 0).sum(1),
        output_embeddings=outputs,
        supervision_ids=ids,
        supervision_embeddings=table[ids],
        supervision_weights=weights,
        negatives_sampler=_sampler(l2),
        similarity_module=similarity,
        user_ids=users,
    )


def _formula(ids, weights, table, outputs, similarity, temperature, l2, users):
    """Per supervised position: logsumexp over the catalogue 1..X minus the positive's logit."""
    catalogue = _normalise(table[1:], l2)  # [X, D]
    numerator, denominator = 0.0, 0.0
    for b in range(B):
        for t in range(N):
            if weights[b, t] <= 0:
                continue
            uid = None if users is None else users[b : b + 1]
            logits = similarity(outputs[b, t].unsqueeze(0), catalogue.unsqueeze(0), uid)[0][0]
            loss = (
                torch.logsumexp(logits / temperature, 0) - logits[int(ids[b, t]) - 1] / temperature
            )
            numerator = numerator + weights[b, t] * loss
            denominator += float(weights[b, t])
    return numerator / denominator


def _leaves(table, outputs, similarity):
    return [table, outputs, *similarity.parameters()]


@pytest.mark.parametrize("kernel", ["reference", "chunked"])
@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("kind", ["dot", "mol"])
def test_values_and_gradients_equal_the_formula(kernel, l2, kind):
    ids, weights, table, outputs = _inputs()
    similarity = _similarity(kind)
    users = torch.tensor([1, 4, 2]) if kind == "mol" else None
    module = FullSoftmaxLoss(
        temperature=0.3, item_embedding_fn=lambda i: table[i],
        catalogue_item_ids=torch.arange(1, X + 1), chunk_positions=2, chunk_items=4,
    )  # fmt: skip
    with kernels.using(kernel):
        assert kernels.resolve_name("full_softmax_losses", "cpu") == kernel
        loss, _ = _loss(module, ids, weights, table, outputs, similarity, l2, users)
        grads = torch.autograd.grad(loss, _leaves(table, outputs, similarity))
    expected = _formula(ids, weights, table, outputs, similarity, 0.3, l2, users)
    expected_grads = torch.autograd.grad(expected, _leaves(table, outputs, similarity))
    torch.testing.assert_close(loss, expected)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)
    assert float(grads[0].abs().sum()) > 0 and float(grads[1].abs().sum()) > 0
    # Padding rows get no gradient (weight 0): the loss never looked at them.
    assert float(grads[1][0, 3:].abs().sum()) == 0.0


def test_the_formula_is_cross_entropy_over_the_catalogue():
    """Guards the formula above with torch's own cross-entropy (dot product, no l2)."""
    ids, weights, table, outputs = _inputs()
    mask = weights > 0
    logits = outputs[mask] @ table[1:].t() / 0.3  # [L, X]
    per_row = torch.nn.functional.cross_entropy(logits, ids[mask] - 1, reduction="none")
    expected = (per_row * weights[mask]).sum() / weights[mask].sum()
    formula = _formula(ids, weights, table, outputs, DotProductSimilarity(), 0.3, False, None)
    torch.testing.assert_close(formula, expected)


@pytest.mark.parametrize("chunks", [(1, 1), (1, 3), (4, 2), (100, 100), (7, X + 5)])
@pytest.mark.parametrize("kind", ["dot", "mol"])
def test_chunked_equals_unchunked_values_and_every_gradient(chunks, kind):
    ids, weights, table, outputs = _inputs(seed=5)
    similarity = _similarity(kind)
    users = torch.tensor([0, 3, 2]) if kind == "mol" else None
    results = []
    for kernel, (positions, items) in (("reference", (1, 1)), ("chunked", chunks)):
        module = FullSoftmaxLoss(
            temperature=0.2, item_embedding_fn=lambda i: table[i],
            catalogue_item_ids=torch.arange(1, X + 1), chunk_positions=positions,
            chunk_items=items,
        )  # fmt: skip
        with kernels.using(kernel):
            loss, aux = _loss(module, ids, weights, table, outputs, similarity, True, users)
            grads = torch.autograd.grad(loss, _leaves(table, outputs, similarity))
        results.append((loss, aux, grads))
    (ref_loss, ref_aux, ref_grads), (loss, aux, grads) = results
    torch.testing.assert_close(loss, ref_loss)
    assert set(aux) == set(ref_aux)
    for name in aux:
        torch.testing.assert_close(aux[name], ref_aux[name])
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_no_supervised_position_gives_a_zero_loss_with_a_gradient():
    ids, weights, table, outputs = _inputs()
    module = FullSoftmaxLoss(
        item_embedding_fn=lambda i: table[i], catalogue_item_ids=torch.arange(1, X + 1)
    )
    loss, aux = _loss(
        module, ids * 0, weights * 0, table, outputs, DotProductSimilarity(), False, None
    )
    assert float(loss.detach()) == 0.0 and aux == {} and loss.requires_grad


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
        ({"temperature": -1.0}, "temperature must be > 0"),
        ({"chunk_items": 0}, "chunk_positions and chunk_items must be >= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FullSoftmaxLoss(**kwargs)


def test_without_the_catalogue_it_says_what_it_needs():
    ids, weights, table, outputs = _inputs()
    with pytest.raises(ValueError, match="needs item_embedding_fn and catalogue_item_ids"):
        _loss(FullSoftmaxLoss(), ids, weights, table, outputs, DotProductSimilarity(), False, None)


def test_debug_str_names_the_temperature():
    assert FullSoftmaxLoss().debug_str() == "ce-t0.05"
    assert FullSoftmaxLoss(temperature=1.0).debug_str() == "ce-t1"

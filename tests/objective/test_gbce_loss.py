"""GBCELoss against the plain per-position formula; t = 0 with one negative is BCE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from generative_recommenders.modeling.gbce_loss import GBCELoss, gbce_beta
from generative_recommenders.modeling.losses import BCELoss
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.ops import kernels
from tests.objective.objective_helpers import LearnedSimilarity
from tests.objective.sampled_helpers import (
    SLOTS,
    D,
    assert_same_values_and_gradients,
    leaves,
    reference_loss,
    run_loss,
)

CATALOGUE = torch.arange(1, 10)  # X = 9


def test_beta_follows_the_paper():
    # alpha = k / (X - 1); t = 0 -> beta = 1 (BCE), t = 1 -> beta = alpha.
    assert gbce_beta(3, 9, 0.0) == pytest.approx(1.0)
    assert gbce_beta(3, 9, 1.0) == pytest.approx(3 / 8)
    alpha = 128 / 3415
    assert gbce_beta(128, 3416, 0.75) == pytest.approx(alpha * (0.75 * (1 - 1 / alpha) + 1 / alpha))


@pytest.mark.parametrize("kernel", ["reference", "fused"])
@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("learned", [False, True])
@pytest.mark.parametrize("t", [0.0, 0.75, 1.0])
def test_gbce_equals_the_formula(kernel, l2, learned, t):
    table, outputs = leaves()
    similarity = LearnedSimilarity(D).double() if learned else DotProductSimilarity()
    users = torch.tensor([3, 5]) if learned else None
    module = GBCELoss(num_to_sample=3, t=t, temperature=0.7, catalogue_item_ids=CATALOGUE)
    beta = (3 / 8) * (t * (1 - 8 / 3) + 8 / 3)

    def formula(positive, negatives):
        loss = -beta * torch.log(torch.sigmoid(positive))
        return loss - torch.log(1 - torch.sigmoid(negatives)).sum()

    with kernels.using(kernel):
        loss, _ = run_loss(module, SLOTS, table, outputs, similarity, l2, users)
        expected = reference_loss(formula, SLOTS, table, outputs, similarity, 0.7, l2, users)
        assert_same_values_and_gradients(loss, expected, [table, outputs, *similarity.parameters()])


@pytest.mark.parametrize("kernel", ["reference", "fused"])
@pytest.mark.parametrize("l2", [False, True])
def test_t_zero_with_one_negative_equals_bce(kernel, l2):
    table, outputs = leaves(seed=4)
    slots = SLOTS[:, :1]  # one negative per position, position 0's a hit
    similarity = DotProductSimilarity()
    gbce = GBCELoss(num_to_sample=1, t=0.0, catalogue_item_ids=CATALOGUE)
    with kernels.using(kernel):
        got, _ = run_loss(gbce, slots, table, outputs, similarity, l2)
        want, _ = run_loss(BCELoss(), slots, table, outputs, similarity, l2)
        assert_same_values_and_gradients(got, want, [table, outputs])


def test_t_changes_the_loss():
    """Guards the test above: with t > 0 the positive term is down-weighted (beta < 1)."""
    table, outputs = leaves()
    similarity = DotProductSimilarity()
    losses = [
        run_loss(
            GBCELoss(num_to_sample=3, t=t, catalogue_item_ids=CATALOGUE),
            SLOTS, table, outputs, similarity, False,
        )[0]
        for t in (0.0, 0.75)
    ]  # fmt: skip
    assert float(losses[1].detach()) < float(losses[0].detach())


def test_row_losses_skip_hits():
    module = GBCELoss(num_to_sample=2, t=0.0, catalogue_item_ids=CATALOGUE)
    logits = torch.tensor([[0.5, 2.0, -1.0]])
    rows = module.row_losses(logits, torch.tensor([[True, False]]))
    torch.testing.assert_close(
        rows, F.softplus(torch.tensor([-0.5])) + F.softplus(torch.tensor([-1.0]))
    )


@pytest.mark.parametrize("t", [1.5, -0.1, float("nan")])
def test_t_outside_zero_one_is_refused(t):
    with pytest.raises(ValueError) as caught:
        GBCELoss(t=t)
    assert str(caught.value) == f"GBCELoss.t={t!r}: expected 0 <= t <= 1"


@pytest.mark.parametrize("temperature", [0.0, -2.0])
def test_a_bad_temperature_is_refused(temperature):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        GBCELoss(temperature=temperature)


def test_without_the_catalogue_it_says_what_it_needs():
    with pytest.raises(ValueError, match="needs catalogue_item_ids"):
        GBCELoss(num_to_sample=3).row_losses(torch.zeros(1, 4), torch.zeros(1, 3, dtype=torch.bool))


def test_debug_str():
    assert GBCELoss(catalogue_item_ids=CATALOGUE).debug_str() == "gbce-t0.75-n128"
    named = GBCELoss(num_to_sample=4, t=0.5, temperature=0.5).debug_str()
    assert named == "gbce-t0.5-n4-temp0.5"

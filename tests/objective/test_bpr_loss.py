"""BPRLoss against the plain per-position formula (values and gradients)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from generative_recommenders.modeling.bpr_loss import BPRLoss
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.ops import kernels
from tests.objective.objective_helpers import LearnedSimilarity
from tests.objective.sampled_helpers import (
    CANDIDATE_IDS,
    SLOTS,
    D,
    assert_same_values_and_gradients,
    leaves,
    reference_loss,
    run_loss,
)


def _bpr(positive: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """mean over the kept negatives of -log sigmoid(s+ - s-); 0 without any."""
    if negatives.numel() == 0:
        return positive * 0.0
    return -torch.log(torch.sigmoid(positive - negatives)).mean()


def test_the_draws_contain_hits_and_a_position_with_only_hits():
    assert int((CANDIDATE_IDS[SLOTS[0]] == 4).sum()) == 2
    assert bool((CANDIDATE_IDS[SLOTS[4]] == 7).all())


@pytest.mark.parametrize("kernel", ["reference", "fused"])
@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("learned", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_bpr_equals_the_formula(kernel, l2, learned, temperature):
    table, outputs = leaves()
    similarity = LearnedSimilarity(D).double() if learned else DotProductSimilarity()
    users = torch.tensor([3, 5]) if learned else None
    module = BPRLoss(num_to_sample=3, temperature=temperature)
    with kernels.using(kernel):
        loss, _ = run_loss(module, SLOTS, table, outputs, similarity, l2, users)
        expected = reference_loss(_bpr, SLOTS, table, outputs, similarity, temperature, l2, users)
        assert_same_values_and_gradients(loss, expected, [table, outputs, *similarity.parameters()])


def test_a_position_whose_negatives_are_all_hits_contributes_zero():
    table, outputs = leaves()
    similarity = DotProductSimilarity()
    module = BPRLoss(num_to_sample=3)
    logits = torch.tensor([[0.5, 2.0, -1.0, 3.0], [1.0, 7.0, 7.0, 7.0]])
    hits = torch.tensor([[False, True, False], [True, True, True]])
    rows = module.row_losses(logits, hits)
    torch.testing.assert_close(rows[1], torch.tensor(0.0))
    torch.testing.assert_close(rows[0], (F.softplus(torch.tensor([1.5, 2.5])).mean()))
    loss, _ = run_loss(module, SLOTS, table, outputs, similarity, False)
    assert torch.isfinite(loss)


def test_defaults_and_debug_str():
    module = BPRLoss()
    assert module.debug_str() == "bpr-t1-n1"
    assert BPRLoss(num_to_sample=8, temperature=0.5).debug_str() == "bpr-t0.5-n8"


@pytest.mark.parametrize(
    "kwargs, message",
    [({"temperature": 0.0}, "temperature must be > 0"), ({"num_to_sample": 0}, ">= 1")],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BPRLoss(**kwargs)

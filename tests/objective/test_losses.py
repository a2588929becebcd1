"""Sampled-softmax and BCE losses against direct per-position formulas; weighting; checkpointing."""

from __future__ import annotations

import math

import pytest
import torch

from generative_recommenders.modeling.losses import BCELoss, SampledSoftmaxLoss, get_weighted_loss
from generative_recommenders.modeling.negatives import InBatchNegativesSampler
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from tests.objective.objective_helpers import LearnedSimilarity

B, N, D = 2, 4, 3


class FixedSlotsSampler(InBatchNegativesSampler):
    """In-batch sampler whose draws are given by the test (the loss, not the RNG, is under test)."""

    def __init__(self, slots: torch.Tensor, l2_norm: bool) -> None:
        super().__init__(l2_norm=l2_norm, l2_norm_eps=1e-6)
        self._slots = slots

    def draw_slots(self, num_positions, num_to_sample, device, generator=None):
        assert self._slots.shape == (num_positions, num_to_sample)
        return self._slots


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # Supervision ids: row 0 has 3 supervised positions, row 1 has 2 (then padding).
    ids = torch.tensor([[4, 7, 4, 0], [9, 7, 0, 0]], dtype=torch.int64)
    weights = torch.tensor([[1.0, 0.5, 2.0, 0.0], [1.0, 1.5, 0.0, 0.0]])
    table = torch.randn(10, D, generator=gen)
    outputs = torch.randn(B, N, D, generator=gen)
    return ids, weights, table, outputs


def _normalise(x: torch.Tensor, on: bool) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6) if on else x


def _reference(kind, ids, weights, table, outputs, cand_ids, slots, similarity, temp, l2, users):
    """Per-position loop over the valid positions, with accidental hits dropped."""
    numerator, denominator = 0.0, 0.0
    row = 0
    for b in range(B):
        for t in range(N):
            if weights[b, t] <= 0:
                continue
            query = outputs[b, t].unsqueeze(0)
            positive = _normalise(table[ids[b, t]], l2)
            kept = [int(cand_ids[s]) for s in slots[row] if int(cand_ids[s]) != int(ids[b, t])]
            items = torch.stack([positive] + [_normalise(table[i], l2) for i in kept]).unsqueeze(0)
            uid = None if users is None else users[b : b + 1]
            logits = similarity(query, items, uid)[0][0] / temp
            if kind == "softmax":
                loss = -(logits[0] - torch.logsumexp(logits, dim=0))
            else:
                loss = torch.log1p(torch.exp(-logits[0]))
                if kept:
                    loss = loss + torch.log1p(torch.exp(logits[1]))
            numerator = numerator + weights[b, t] * loss
            denominator += float(weights[b, t])
            row += 1
    return numerator / denominator


def _run(loss_module, sampler, ids, weights, table, outputs, similarity, users):
    flat = ids.view(-1)
    # In-batch candidates: the supervision ids themselves (as the trainer's batch would give).
    sampler.process_batch(flat, flat != 0, table[flat])
    return loss_module(
        lengths=(ids != 0).sum(1),
        output_embeddings=outputs,
        supervision_ids=ids,
        supervision_embeddings=table[ids],
        supervision_weights=weights,
        negatives_sampler=sampler,
        similarity_module=similarity,
        user_ids=users,
    )


@pytest.mark.parametrize("l2", [False, True])
@pytest.mark.parametrize("learned", [False, True])
def test_sampled_softmax_equals_direct_formula_with_accidental_hits_masked(l2, learned):
    ids, weights, table, outputs = _inputs()
    # Candidates are [4, 7, 9] (slots 0, 1, 2). Position 0 (positive 4) draws 4 twice: hits.
    slots = torch.tensor([[0, 1, 0], [2, 2, 0], [1, 2, 2], [0, 1, 1], [2, 0, 0]])
    cand_ids = torch.tensor([4, 7, 9])
    assert int((cand_ids[slots[0]] == 4).sum()) == 2  # the case really contains accidental hits
    similarity = LearnedSimilarity(D) if learned else DotProductSimilarity()
    users = torch.tensor([3, 5]) if learned else None
    loss_module = SampledSoftmaxLoss(num_to_sample=3, temperature=0.5)
    loss, aux = _run(
        loss_module, FixedSlotsSampler(slots, l2), ids, weights, table, outputs, similarity, users
    )
    expected = _reference(
        "softmax", ids, weights, table, outputs, cand_ids, slots, similarity, 0.5, l2, users
    )
    torch.testing.assert_close(loss, expected)
    if learned:
        assert set(aux) == {"uid_embedding_l2_norm", "score_mean"}
        torch.testing.assert_close(
            aux["uid_embedding_l2_norm"], similarity.uid.weight.pow(2).mean()
        )


def test_an_unmasked_accidental_hit_would_change_the_loss():
    """Guards the masking test above: the hit case is not a no-op."""
    ids, weights, table, outputs = _inputs()
    hit = torch.tensor([[0, 0, 0], [2, 2, 0], [1, 2, 2], [0, 1, 1], [2, 0, 0]])
    miss = torch.tensor([[1, 1, 1], [2, 2, 0], [1, 2, 2], [0, 1, 1], [2, 0, 0]])
    loss_module = SampledSoftmaxLoss(num_to_sample=3, temperature=1.0)
    sim = DotProductSimilarity()
    loss_hit, _ = _run(
        loss_module, FixedSlotsSampler(hit, False), ids, weights, table, outputs, sim, None
    )
    # With all its negatives masked, position 0 contributes log(1) = 0.
    others = _reference(
        "softmax", ids, weights, table, outputs, torch.tensor([4, 7, 9]), hit, sim, 1.0, False, None
    )
    torch.testing.assert_close(loss_hit, others)
    loss_miss, _ = _run(
        loss_module, FixedSlotsSampler(miss, False), ids, weights, table, outputs, sim, None
    )
    assert not torch.allclose(loss_hit, loss_miss)


@pytest.mark.parametrize("learned", [False, True])
def test_bce_equals_direct_formula(learned):
    ids, weights, table, outputs = _inputs(1)
    slots = torch.tensor([[0], [1], [2], [1], [0]])  # position 0 (positive 4) hits 4; 3 hits 7
    similarity = LearnedSimilarity(D) if learned else DotProductSimilarity()
    users = torch.tensor([1, 2]) if learned else None
    loss, _ = _run(
        BCELoss(temperature=2.0),
        FixedSlotsSampler(slots, True),
        ids,
        weights,
        table,
        outputs,
        similarity,
        users,
    )
    expected = _reference(
        "bce",
        ids,
        weights,
        table,
        outputs,
        torch.tensor([4, 7, 9]),
        slots,
        similarity,
        2.0,
        True,
        users,
    )
    torch.testing.assert_close(loss, expected)


def test_activation_checkpoint_gives_the_same_loss_and_gradients():
    ids, weights, table, outputs = _inputs(2)
    slots = torch.randint(0, 3, (5, 6), generator=torch.Generator().manual_seed(0))
    similarity = LearnedSimilarity(D)
    results = []
    for checkpointed in (False, True):
        leaf_table = table.clone().requires_grad_(True)
        leaf_out = outputs.clone().requires_grad_(True)
        similarity.zero_grad()
        module = SampledSoftmaxLoss(
            6, 0.1, activation_checkpoint=checkpointed, checkpoint_chunk_size=2
        )
        loss, aux = _run(
            module,
            FixedSlotsSampler(slots, True),
            ids,
            weights,
            leaf_table,
            leaf_out,
            similarity,
            torch.tensor([0, 1]),
        )
        (loss + aux["score_mean"]).backward()
        results.append(
            (
                loss.detach(),
                aux["score_mean"].detach(),
                leaf_table.grad,
                leaf_out.grad,
                similarity.item.weight.grad.clone(),
            )
        )
    for plain, checkpointed in zip(*results, strict=True):
        torch.testing.assert_close(plain, checkpointed)


def test_no_supervised_position_gives_zero_loss_that_backpropagates():
    outputs = torch.randn(1, 3, D, requires_grad=True)
    sampler = InBatchNegativesSampler(False, 1e-6)
    sampler.process_batch(torch.tensor([1, 2]), torch.tensor([True, True]), torch.randn(2, D))
    loss, aux = SampledSoftmaxLoss(4, 1.0)(
        lengths=torch.tensor([0]),
        output_embeddings=outputs,
        supervision_ids=torch.zeros(1, 3, dtype=torch.int64),
        supervision_embeddings=torch.zeros(1, 3, D),
        supervision_weights=torch.zeros(1, 3),
        negatives_sampler=sampler,
        similarity_module=DotProductSimilarity(),
    )
    loss.backward()
    assert float(loss.detach()) == 0.0 and aux == {}


def test_real_in_batch_sampling_trains_the_table():
    ids, weights, table, outputs = _inputs(3)
    table = table.clone().requires_grad_(True)
    sampler = InBatchNegativesSampler(True, 1e-6, generator=torch.Generator().manual_seed(0))
    loss, _ = _run(
        SampledSoftmaxLoss(8, 0.05),
        sampler,
        ids,
        weights,
        table,
        outputs,
        DotProductSimilarity(),
        None,
    )
    assert math.isfinite(float(loss.detach())) and float(loss.detach()) > 0
    loss.backward()
    assert float(table.grad[[4, 7, 9]].abs().sum()) > 0


def test_get_weighted_loss_adds_the_weighted_auxiliary_terms():
    main = torch.tensor(2.0)
    aux = {"mi_loss": torch.tensor(3.0), "uid_embedding_l2_norm": torch.tensor(5.0)}
    total = get_weighted_loss(main, aux, {"mi_loss": 0.1, "uid_embedding_l2_norm": 0.5})
    torch.testing.assert_close(total, torch.tensor(2.0 + 0.3 + 2.5))
    torch.testing.assert_close(get_weighted_loss(main, aux, {}), main)


def test_get_weighted_loss_names_an_unknown_key_and_the_available_ones():
    with pytest.raises(ValueError, match=r"'mi_los'.*mi_loss, uid_embedding_l2_norm"):
        get_weighted_loss(
            torch.tensor(1.0),
            {"mi_loss": torch.tensor(0.0), "uid_embedding_l2_norm": torch.tensor(0.0)},
            {"mi_los": 1.0},
        )


@pytest.mark.parametrize("loss_kind", ["softmax", "bce"])
@pytest.mark.parametrize("sampler_kind", ["in-batch", "in-batch-repeated", "local", "local-sparse"])
def test_fused_dot_product_path_equals_the_plain_path(loss_kind, sampler_kind, monkeypatch):
    """The fused (chunked, no [L, R, D] gather) path: same loss and gradients as the plain one.

    Covers the sampled-softmax op (unique candidates: in-batch dedup, local; dense and sparse
    strategies) and its fallback when the in-batch table repeats ids."""
    from generative_recommenders.modeling.negatives import LocalNegativesSampler
    from generative_recommenders.ops import kernels, sampled_dot

    if sampler_kind == "local-sparse":
        monkeypatch.setattr(sampled_dot, "DENSE_TABLE_FACTOR", 0)
    local = sampler_kind.startswith("local")

    ids, weights, table, outputs = _inputs(5)
    results = []
    for fused in (False, True):
        leaf_table = table.clone().requires_grad_(True)
        leaf_out = outputs.clone().requires_grad_(True)
        gen = torch.Generator().manual_seed(7)
        if local:
            sampler = LocalNegativesSampler(
                lambda x, t=leaf_table: t[x],
                torch.arange(1, 10, dtype=torch.int64),
                l2_norm=True,
                l2_norm_eps=1e-6,
                generator=gen,
            )
        else:
            dedup = sampler_kind == "in-batch"
            sampler = InBatchNegativesSampler(True, 1e-6, dedup, generator=gen)
        module = SampledSoftmaxLoss(16, 0.05) if loss_kind == "softmax" else BCELoss(0.5)
        with kernels.using("auto" if fused else "reference"):
            loss, _ = _run(
                module, sampler, ids, weights, leaf_table, leaf_out, DotProductSimilarity(), None
            )
        loss.backward()
        results.append((loss.detach(), leaf_table.grad, leaf_out.grad))
    for plain, fused in zip(*results, strict=True):
        torch.testing.assert_close(fused, plain)
    assert float(results[1][1].abs().sum()) > 0

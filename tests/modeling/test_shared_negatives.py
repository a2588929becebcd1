"""Shared negatives (``negatives_sharing``): losses against hand-gathered formulas, real sharing."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.modeling.losses import BCELoss, SampledSoftmaxLoss
from generative_recommenders.modeling.negatives import (
    InBatchNegativesSampler,
    LocalNegativesSampler,
    NegativesSharing,
)
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.ops import kernels
from tests.objective.objective_helpers import LearnedSimilarity

B, N, D, V = 3, 5, 4, 10
TEMPERATURE = 0.5
# Supervision ids: row 0 has 4 supervised positions, row 1 has 3, row 2 has 1 (then padding).
IDS = torch.tensor([[4, 7, 4, 9, 0], [7, 7, 2, 0, 0], [9, 0, 0, 0, 0]], dtype=torch.int64)
WEIGHTS = torch.tensor(
    [[1.0, 0.5, 2.0, 1.0, 0.0], [1.0, 1.5, 0.5, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0]]
)
CANDIDATES = torch.tensor([2, 4, 7, 9])  # in-batch (deduplicated, sorted) = the local catalogue
# Shared slots into CANDIDATES, chosen so that accidental hits occur:
# row 0 draws 4, 7, 4 (hits its 4s and its 7); row 1 draws 7, 2, 9; row 2 draws 9, 9, 2.
SLOTS = {
    ("softmax", NegativesSharing.ROW): torch.tensor([[1, 2, 1], [2, 0, 3], [3, 3, 0]]),
    ("softmax", NegativesSharing.BATCH): torch.tensor([[1, 2, 3]]),
    ("bce", NegativesSharing.ROW): torch.tensor([[1], [2], [3]]),
    ("bce", NegativesSharing.BATCH): torch.tensor([[2]]),
}


class _FixedDraws:
    """Sampler mixin whose draws are given by the test; checks how many the loss asks for."""

    def __init__(self, slots: torch.Tensor, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fixed_slots = slots

    def draw_slots(self, num_positions, num_to_sample, device, generator=None):
        assert self.fixed_slots.shape == (num_positions, num_to_sample)
        return self.fixed_slots


class FixedInBatch(_FixedDraws, InBatchNegativesSampler):
    pass


class FixedLocal(_FixedDraws, LocalNegativesSampler):
    pass


class RecordingInBatch(InBatchNegativesSampler):
    """A real seeded in-batch sampler that keeps what it drew."""

    def draw_slots(self, num_positions, num_to_sample, device, generator=None):
        self.drawn = super().draw_slots(num_positions, num_to_sample, device, generator)
        return self.drawn


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6)


def _leaves(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(item table [V + 1, D], encoder outputs [B, N, D]), float64 leaves requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(V + 1, D, generator=gen, dtype=torch.float64).requires_grad_(True)
    outputs = torch.randn(B, N, D, generator=gen, dtype=torch.float64).requires_grad_(True)
    return table, outputs


def _sampler(kind: str, table: torch.Tensor, slots: torch.Tensor | None = None):
    """An l2-normalising sampler over CANDIDATES, its process_batch already called."""
    if kind == "local":
        sampler = FixedLocal(slots, lambda ids: table[ids], CANDIDATES, True, 1e-6)
    elif slots is not None:
        sampler = FixedInBatch(slots, True, 1e-6)
    else:
        sampler = RecordingInBatch(True, 1e-6, generator=torch.Generator().manual_seed(11))
    flat = IDS.reshape(-1)
    sampler.process_batch(flat, flat != 0, table[flat])
    assert torch.equal(sampler.candidate_ids(), CANDIDATES)
    return sampler


def _loss(module, sampler, table, outputs, similarity, users=None) -> torch.Tensor:
    loss, _ = module(
        lengths=(IDS != 0).sum(1),
        output_embeddings=outputs,
        supervision_ids=IDS,
        supervision_embeddings=table[IDS],
        supervision_weights=WEIGHTS,
        negatives_sampler=sampler,
        similarity_module=similarity,
        user_ids=users,
    )
    return loss


def _module(kind: str, sharing: NegativesSharing | None):
    extra = {} if sharing is None else {"negatives_sharing": sharing}
    if kind == "softmax":
        return SampledSoftmaxLoss(3, TEMPERATURE, **extra)
    return BCELoss(TEMPERATURE, **extra)


def _direct(kind, table, outputs, slots, group_of, similarity, users=None, mask=True):
    """The loss by hand: per supervised position (b, t), gather its group's negatives explicitly.

    ``slots`` [G, R] into CANDIDATES; ``group_of(b, t, l)`` picks the row of ``slots`` used by the
    l-th supervised position. Negatives equal to the positive are dropped when ``mask``.
    """
    numerator, denominator, position = 0.0, 0.0, 0
    for b in range(B):
        for t in range(N):
            if WEIGHTS[b, t] <= 0:
                continue
            positive_id = int(IDS[b, t])
            negative_ids = [int(CANDIDATES[s]) for s in slots[group_of(b, t, position)]]
            kept = [i for i in negative_ids if i != positive_id or not mask]
            items = _normalise(table[torch.tensor([positive_id, *kept])]).unsqueeze(0)
            uid = None if users is None else users[b : b + 1]
            logits = similarity(outputs[b, t].unsqueeze(0), items, uid)[0][0] / TEMPERATURE
            if kind == "softmax":
                loss = torch.logsumexp(logits, dim=0) - logits[0]
            else:
                loss = torch.nn.functional.softplus(-logits[0])
                if kept:
                    loss = loss + torch.nn.functional.softplus(logits[1])
            numerator = numerator + WEIGHTS[b, t] * loss
            denominator += float(WEIGHTS[b, t])
            position += 1
    return numerator / denominator


def _group_of(sharing: NegativesSharing):
    if sharing is NegativesSharing.ROW:
        return lambda b, t, position: b
    return lambda b, t, position: 0


def _values_and_grads(loss, table, outputs, parameters=()):
    grads = torch.autograd.grad(loss, [table, outputs, *parameters])
    return [loss.detach(), *grads]


@pytest.mark.parametrize("sharing", [NegativesSharing.ROW, NegativesSharing.BATCH], ids=str)
@pytest.mark.parametrize("kind", ["softmax", "bce"])
@pytest.mark.parametrize(
    "path", ["fused-dot/in-batch", "fused-dot/local", "plain-dot/in-batch", "learned/in-batch"]
)
def test_shared_loss_equals_the_hand_gathered_formula(sharing, kind, path):
    """Values and gradients (queries, item table, similarity) with accidental hits masked."""
    table, outputs = _leaves(0)
    scoring, sampler_kind = path.split("/")
    slots = SLOTS[(kind, sharing)]
    torch.manual_seed(0)
    learned = scoring == "learned"
    similarity = LearnedSimilarity(D).double() if learned else DotProductSimilarity()
    users = torch.tensor([1, 2, 3]) if learned else None
    parameters = list(similarity.parameters())
    module = _module(kind, sharing)
    sampler = _sampler(sampler_kind, table, slots)
    with kernels.using("reference" if scoring == "plain-dot" else "auto"):
        loss = _loss(module, sampler, table, outputs, similarity, users)
    got = _values_and_grads(loss, table, outputs, parameters)
    expected_loss = _direct(kind, table, outputs, slots, _group_of(sharing), similarity, users)
    expected = _values_and_grads(expected_loss, table, outputs, parameters)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)
    assert float(got[1].abs().sum()) > 0 and float(got[2].abs().sum()) > 0
    # The case really contains accidental hits that matter: unmasked, the loss would differ.
    unmasked = _direct(kind, table, outputs, slots, _group_of(sharing), similarity, users, False)
    assert not torch.allclose(got[0], unmasked.detach())


@pytest.mark.parametrize("kind", ["softmax", "bce"])
@pytest.mark.parametrize("fused", [True, False])
def test_none_is_the_default_and_draws_independently_per_position(kind, fused):
    """Default = NONE: one draw of R per supervised position, scored as the per-position formula."""
    runs = []
    for sharing in (None, NegativesSharing.NONE):
        table, outputs = _leaves(1)
        sampler = _sampler("in-batch", table)
        with kernels.using("auto" if fused else "reference"):
            loss = _loss(_module(kind, sharing), sampler, table, outputs, DotProductSimilarity())
        runs.append((_values_and_grads(loss, table, outputs), sampler.drawn, table, outputs))
    (default, drawn, table, outputs), (explicit, _, _, _) = runs
    for a, b in zip(default, explicit, strict=True):
        assert torch.equal(a, b)
    num_positions = int((WEIGHTS > 0).sum())
    assert drawn.shape == (num_positions, 1 if kind == "bce" else 3)
    expected_loss = _direct(
        kind, table, outputs, drawn, lambda b, t, position: position, DotProductSimilarity()
    )
    for a, b in zip(default, _values_and_grads(expected_loss, table, outputs), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("sampler_kind", ["in-batch", "local"])
def test_row_sharing_gives_each_row_one_draw_shared_by_its_positions(sampler_kind):
    table = torch.randn(V + 1, D)
    if sampler_kind == "local":
        sampler = LocalNegativesSampler(lambda ids: table[ids], torch.arange(1, V + 1), False, 1e-6)
    else:
        flat = torch.arange(1, 4 * 6 + 1) % V + 1
        sampler = InBatchNegativesSampler(False, 1e-6)
        sampler.process_batch(flat, flat != 0, table[flat])
    position_rows = torch.tensor([0, 0, 0, 1, 1, 3, 3, 3, 3])  # row 2 has no supervised position
    gen = torch.Generator().manual_seed(5)
    slots, groups = sampler.draw_shared_slots(NegativesSharing.ROW, 16, position_rows, 4, gen)
    assert slots.shape == (4, 16) and torch.equal(groups, position_rows)
    per_position = sampler.candidate_ids()[slots][groups]  # [L, R] ids each position sees
    for row in (0, 1, 3):
        seen = per_position[position_rows == row]
        assert bool((seen == seen[0]).all())  # every position of the row: the same 16 ids
    firsts = [per_position[position_rows == row][0] for row in (0, 1, 3)]
    assert not torch.equal(firsts[0], firsts[1]) and not torch.equal(firsts[1], firsts[2])
    again, _ = sampler.draw_shared_slots(NegativesSharing.ROW, 16, position_rows, 4, gen)
    assert not torch.equal(again, slots)  # a fresh draw each step


def test_batch_sharing_gives_every_position_the_same_draw():
    table = torch.randn(V + 1, D)
    sampler = LocalNegativesSampler(lambda ids: table[ids], torch.arange(1, V + 1), False, 1e-6)
    position_rows = torch.tensor([0, 0, 1, 2, 2, 2])
    gen = torch.Generator().manual_seed(5)
    slots, groups = sampler.draw_shared_slots(NegativesSharing.BATCH, 8, position_rows, 3, gen)
    assert slots.shape == (1, 8) and torch.equal(groups, torch.zeros(6, dtype=torch.int64))
    per_position = sampler.candidate_ids()[slots][groups]
    assert bool((per_position == per_position[0]).all())
    with pytest.raises(ValueError, match="ROW or BATCH"):
        sampler.draw_shared_slots(NegativesSharing.NONE, 8, position_rows, 3, gen)


@pytest.mark.parametrize("sharing", [NegativesSharing.ROW, NegativesSharing.BATCH], ids=str)
def test_real_shared_draws_reach_the_loss(sharing):
    """With a real seeded sampler, the loss is the hand formula for the draws it recorded."""
    table, outputs = _leaves(2)
    sampler = _sampler("in-batch", table)
    loss = _loss(_module("softmax", sharing), sampler, table, outputs, DotProductSimilarity())
    assert sampler.drawn.shape == ((B, 3) if sharing is NegativesSharing.ROW else (1, 3))
    expected = _direct(
        "softmax", table, outputs, sampler.drawn, _group_of(sharing), DotProductSimilarity()
    )
    torch.testing.assert_close(loss, expected)


def test_sharing_must_be_a_negatives_sharing_and_shows_in_debug_str():
    with pytest.raises(ValueError, match="NegativesSharing"):
        SampledSoftmaxLoss(4, 0.05, negatives_sharing="batch")
    assert SampledSoftmaxLoss(4, 0.05).debug_str() == "ssl-t0.05-n4"
    shared = BCELoss(negatives_sharing=NegativesSharing.ROW)
    assert shared.debug_str() == "bce-t1-share_row"

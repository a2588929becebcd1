"""Negative samplers: in-batch dedup and normalisation, local sampling over a gappy catalogue."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from generative_recommenders.modeling.negatives import (
    InBatchNegativesSampler,
    LocalNegativesSampler,
)


def _batch():
    ids = torch.tensor([[5, 2, 2, 0], [9, 5, 0, 0]], dtype=torch.int64)
    embeddings = torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0))
    return ids, embeddings


def test_in_batch_dedup_keeps_each_valid_id_once_with_its_embedding():
    ids, embeddings = _batch()
    sampler = InBatchNegativesSampler(l2_norm=False, l2_norm_eps=1e-6)
    sampler.process_batch(ids.view(-1), ids.view(-1) != 0, embeddings.view(-1, 3))
    assert sampler.candidate_ids().tolist() == [2, 5, 9]
    table = sampler.make_lookup(3)(torch.arange(3))
    expected = torch.stack([embeddings[0, 1], embeddings[0, 0], embeddings[1, 0]])
    torch.testing.assert_close(table, expected)


def test_in_batch_without_dedup_keeps_every_valid_occurrence():
    ids, embeddings = _batch()
    sampler = InBatchNegativesSampler(l2_norm=False, l2_norm_eps=1e-6, dedup_embeddings=False)
    sampler.process_batch(ids.view(-1), ids.view(-1) != 0, embeddings.view(-1, 3))
    assert sorted(sampler.candidate_ids().tolist()) == [2, 2, 5, 5, 9]


def test_in_batch_forward_draws_batch_items_with_matching_normalised_embeddings():
    ids, embeddings = _batch()
    sampler = InBatchNegativesSampler(l2_norm=True, l2_norm_eps=1e-6)
    sampler.process_batch(ids.view(-1), ids.view(-1) != 0, embeddings.view(-1, 3))
    positives = torch.tensor([2, 5, 9, 2, 5], dtype=torch.int64)
    neg_ids, neg_embeddings = sampler(positives, 200, generator=torch.Generator().manual_seed(1))
    assert neg_ids.shape == (5, 200) and neg_embeddings.shape == (5, 200, 3)
    assert neg_ids.dtype == torch.int64
    assert set(neg_ids.unique().tolist()) == {2, 5, 9}
    first = {5: embeddings[0, 0], 2: embeddings[0, 1], 9: embeddings[1, 0]}
    for item, row in first.items():
        expected = row / row.norm()
        rows = neg_embeddings[neg_ids == item]
        torch.testing.assert_close(rows, expected.expand(rows.shape[0], 3))
    torch.testing.assert_close(neg_embeddings.norm(dim=-1), torch.ones(5, 200))


def test_draws_are_reproducible_with_a_generator_and_independent_per_position():
    ids, embeddings = _batch()
    sampler = InBatchNegativesSampler(l2_norm=False, l2_norm_eps=1e-6)
    sampler.process_batch(ids.view(-1), ids.view(-1) != 0, embeddings.view(-1, 3))
    positives = torch.ones(64, dtype=torch.int64)
    a, _ = sampler(positives, 16, generator=torch.Generator().manual_seed(3))
    b, _ = sampler(positives, 16, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    # Positions get their own draws: not every row is the same sequence.
    assert not bool((a == a[0]).all())


def test_in_batch_gradients_reach_the_batch_embeddings():
    ids, embeddings = _batch()
    embeddings = embeddings.clone().requires_grad_(True)
    sampler = InBatchNegativesSampler(l2_norm=True, l2_norm_eps=1e-6)
    sampler.process_batch(ids.view(-1), ids.view(-1) != 0, embeddings.view(-1, 3))
    _, negatives = sampler(torch.ones(8, dtype=torch.int64), 32)
    negatives.sum().backward()
    assert embeddings.grad is not None and float(embeddings.grad.abs().sum()) > 0
    # Padding and repeated occurrences (not kept by dedup) get no gradient.
    assert float(embeddings.grad[0, 3].abs().sum()) == 0.0
    assert float(embeddings.grad[0, 2].abs().sum()) == 0.0


@pytest.mark.parametrize("num_draws_hint", ["table", "per_draw"])
def test_local_sampling_stays_inside_a_gappy_catalogue(num_draws_hint):
    catalogue = torch.tensor([3, 7, 8, 20], dtype=torch.int64)
    table = nn.Embedding(21, 5)
    sampler = LocalNegativesSampler(table, catalogue, l2_norm=True, l2_norm_eps=1e-6)
    slots = sampler.draw_slots(50, 40, torch.device("cpu"), torch.Generator().manual_seed(0))
    neg_ids = sampler.candidate_ids()[slots]
    assert set(neg_ids.unique().tolist()) == {3, 7, 8, 20}
    lookup = sampler.make_lookup(slots.numel() if num_draws_hint == "table" else 1)
    got = lookup(slots)
    expected = table(neg_ids)
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(got, expected)


def test_local_forward_never_returns_padding_or_outside_ids():
    catalogue = torch.tensor([2, 11, 12, 40, 41], dtype=torch.int64)
    table = nn.Embedding(50, 4)
    sampler = LocalNegativesSampler(table, catalogue, l2_norm=False, l2_norm_eps=1e-6)
    neg_ids, neg_embeddings = sampler(torch.ones(300, dtype=torch.int64), 7)
    assert bool(torch.isin(neg_ids, catalogue).all())
    assert not bool((neg_ids == 0).any())
    torch.testing.assert_close(neg_embeddings, table(neg_ids))


def test_local_rejects_padding_in_the_catalogue():
    with pytest.raises(ValueError, match="positive"):
        LocalNegativesSampler(nn.Embedding(5, 2), torch.tensor([0, 1, 2]), False, 1e-6)
    with pytest.raises(ValueError, match="int64"):
        LocalNegativesSampler(
            nn.Embedding(5, 2), torch.tensor([1, 2], dtype=torch.int32), False, 1e-6
        )


def test_local_sampler_does_not_adopt_the_item_table_as_its_own_parameters():
    table = nn.Embedding(6, 2)
    sampler = LocalNegativesSampler(table, torch.tensor([1, 2, 5]), False, 1e-6)
    assert list(sampler.parameters()) == [] and list(sampler.state_dict()) == []


def test_candidate_slots_find_each_id_in_a_gappy_unsorted_catalogue():
    catalogue = torch.tensor([30, 4, 17, 9], dtype=torch.int64)
    sampler = LocalNegativesSampler(lambda x: x.float().unsqueeze(-1), catalogue, False, 1e-6)
    slots = sampler.candidate_slots(torch.tensor([17, 30, 5, 9, 31, 1]))
    assert slots.tolist() == [2, 0, -1, 3, -1, -1]


def test_local_sampler_refuses_a_catalogue_with_a_repeated_id():
    with pytest.raises(ValueError, match="distinct"):
        LocalNegativesSampler(lambda x: x, torch.tensor([3, 5, 3]), False, 1e-6)


def test_in_batch_candidate_slots_with_and_without_dedup():
    ids, embeddings = _batch()
    sampler = InBatchNegativesSampler(l2_norm=False, l2_norm_eps=1e-6)
    sampler.process_batch(ids.view(-1), ids.view(-1) != 0, embeddings.view(-1, 3))
    assert sampler.candidate_slots(torch.tensor([9, 2, 7, 5])).tolist() == [2, 0, -1, 1]
    repeated = InBatchNegativesSampler(False, 1e-6, dedup_embeddings=False)
    repeated.process_batch(ids.view(-1), ids.view(-1) != 0, embeddings.view(-1, 3))
    assert repeated.candidate_slots(torch.tensor([9, 2])) is None  # 2 and 5 occur twice

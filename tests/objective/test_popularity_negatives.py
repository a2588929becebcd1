"""Popularity negatives: draw law count^a / sum, zero-count items, sharing, the training counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from generative_recommenders.data.dataset import SequenceDataset
from generative_recommenders.data.splits import training_item_counts
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.modeling.negatives import NegativesSharing
from generative_recommenders.modeling.popularity_negatives import (
    PopularityNegativesSampler,
    alias_table,
)

CATALOGUE = torch.tensor([2, 3, 5, 7, 8, 11], dtype=torch.int64)
COUNTS = torch.tensor([0, 0, 0, 40, 0, 10, 0, 0, 5, 0, 0, 24], dtype=torch.int64)  # id -> count


def _sampler(exponent: float = 1.0, counts: torch.Tensor | None = COUNTS, seed: int = 0):
    table = nn.Embedding(12, 4)
    return PopularityNegativesSampler(
        table,
        CATALOGUE,
        l2_norm=False,
        l2_norm_eps=1e-6,
        item_counts=counts,
        exponent=exponent,
        generator=torch.Generator().manual_seed(seed),
    )


def _expected(exponent: float) -> torch.Tensor:
    counts = COUNTS[CATALOGUE].double()
    weights = torch.ones_like(counts) if exponent == 0 else counts.pow(exponent)
    return weights / weights.sum()


def _chi_square(slots: torch.Tensor, probabilities: torch.Tensor) -> tuple[float, int]:
    """Pearson's statistic over the categories with q > 0, and its degrees of freedom."""
    observed = torch.bincount(slots.reshape(-1), minlength=probabilities.numel()).double()
    keep = probabilities > 0
    expected = probabilities[keep] * slots.numel()
    statistic = float(((observed[keep] - expected) ** 2 / expected).sum())
    return statistic, int(keep.sum()) - 1


@pytest.mark.parametrize("exponent", [1.0, 0.5, 0.0])
def test_draw_frequencies_match_count_to_the_exponent(exponent):
    sampler = _sampler(exponent)
    probabilities = _expected(exponent)
    torch.testing.assert_close(sampler.probabilities(), probabilities)
    torch.testing.assert_close(
        sampler.candidate_log_q(),
        torch.where(probabilities > 0, probabilities.log(), 0.0).float(),
    )
    slots = sampler.draw_slots(4000, 50, torch.device("cpu"))
    assert slots.shape == (4000, 50) and slots.dtype == torch.int64
    statistic, dof = _chi_square(slots, probabilities)
    # 200k draws: a wrong law (e.g. uniform instead of by count) gives a statistic in the 10^4s.
    assert statistic < dof + 6 * (2 * dof) ** 0.5, (statistic, dof)


def test_exponent_zero_is_uniform_over_the_whole_catalogue_zero_counts_included():
    sampler = _sampler(0.0)
    torch.testing.assert_close(
        sampler.probabilities(), torch.full((6,), 1 / 6, dtype=torch.float64)
    )
    slots = sampler.draw_slots(2000, 30, torch.device("cpu"))
    assert set(slots.unique().tolist()) == set(range(6))  # ids 2 and 7 (count 0) too


@pytest.mark.parametrize("exponent", [1.0, 0.75, 2.0])
def test_zero_count_items_are_never_drawn(exponent):
    sampler = _sampler(exponent, seed=3)
    ids = sampler.candidate_ids()[sampler.draw_slots(5000, 40, torch.device("cpu"))]
    assert set(ids.unique().tolist()) == {3, 5, 8, 11}  # never 2 or 7


def test_a_zero_count_last_item_is_never_drawn_either():
    counts = COUNTS.clone()
    counts[11] = 0  # the last catalogue slot now has weight 0 too
    sampler = _sampler(counts=counts, seed=5)
    slots = sampler.draw_slots(5000, 40, torch.device("cpu"))
    assert set(slots.unique().tolist()) == {1, 2, 4}


@pytest.mark.parametrize("seed", [0, 1])
def test_the_alias_table_holds_exactly_the_weights(seed):
    weights = torch.randint(1, 50, (97,), generator=torch.Generator().manual_seed(seed)).double()
    own, alias = alias_table(weights)
    # Column k gives own[k] / P to item k and the rest of the column to alias[k].
    implied = own.clone()
    implied.index_add_(0, alias, 1.0 - own)
    torch.testing.assert_close(implied / weights.numel(), weights / weights.sum())
    assert bool(((own >= 0) & (own <= 1 + 1e-12)).all())


def test_draws_are_independent_per_position_and_reproducible():
    a = _sampler(seed=11).draw_slots(64, 8, torch.device("cpu"))
    b = _sampler(seed=11).draw_slots(64, 8, torch.device("cpu"))
    assert torch.equal(a, b)
    assert len({tuple(row) for row in a.tolist()}) > 32  # rows differ


@pytest.mark.parametrize("sharing", [NegativesSharing.ROW, NegativesSharing.BATCH])
def test_shared_draws_follow_the_same_law(sharing):
    sampler = _sampler()
    rows = torch.tensor([0, 0, 1, 2, 2, 2])
    slots, groups = sampler.draw_shared_slots(sharing, 7, rows, batch_size=3)
    expected_groups = rows if sharing is NegativesSharing.ROW else torch.zeros_like(rows)
    assert torch.equal(groups, expected_groups)
    assert slots.shape == ((3 if sharing is NegativesSharing.ROW else 1), 7)
    assert set(sampler.candidate_ids()[slots].unique().tolist()) <= {3, 5, 8, 11}


def test_forward_returns_ids_and_their_embeddings():
    sampler = _sampler()
    ids, embeddings = sampler(torch.ones(5, dtype=torch.int64), 9)
    assert ids.shape == (5, 9) and embeddings.shape == (5, 9, 4)
    torch.testing.assert_close(embeddings, sampler._item_embedding_fn(ids))


@pytest.mark.parametrize(
    "counts, exponent, expected",
    [
        (None, 1.0, "needs the store's item counts"),
        (torch.zeros(12, dtype=torch.int64), 1.0, "every catalogue item has a training count of 0"),
        (torch.ones(5, dtype=torch.int64), 1.0, "catalogue reaches 11"),
        (COUNTS, -1.0, "PopularityNegativesSampler.exponent=-1.0: expected a number >= 0"),
    ],
)
def test_bad_counts_or_exponent_are_refused(counts, exponent, expected):
    with pytest.raises(ValueError, match=expected):
        _sampler(exponent, counts)


@pytest.mark.parametrize("ignore_last_n", [1, 2])
def test_training_counts_equal_the_items_the_training_split_holds(tiny_data_dir, ignore_last_n):
    store = SequenceStore.open(tiny_data_dir, "tiny")
    counts = training_item_counts(store.offsets, store.item_ids, store.item_counts(), ignore_last_n)
    # What the training loader sees: every window (long enough to hold a whole history) + target.
    dataset = SequenceDataset(store, max_sequence_length=10_000, ignore_last_n=ignore_last_n)
    seen = np.zeros_like(counts)
    for index in range(len(dataset)):
        item = dataset[index]
        np.add.at(seen, item["ids"][: item["length"]], 1)
        seen[item["target_id"]] += 1
    np.testing.assert_array_equal(counts, seen)
    held_out = store.item_counts() - counts
    assert (held_out >= 0).all() and held_out.sum() >= store.num_users * ignore_last_n


def test_training_counts_drop_held_out_events_and_users_too_short_to_train_on():
    # Users: [1, 2, 3, 4] (trained on), [5, 6] (too short for ignore_last_n=1: 2 < 3), [7] .
    offsets = np.array([0, 4, 6, 7])
    item_ids = np.array([1, 2, 3, 4, 5, 6, 7])
    store_counts = np.bincount(item_ids, minlength=9)
    counts = training_item_counts(offsets, item_ids, store_counts, ignore_last_n=1)
    assert counts.tolist() == [0, 1, 1, 1, 0, 0, 0, 0, 0]
    counts = training_item_counts(offsets, item_ids, store_counts, ignore_last_n=2)
    assert counts.tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 0]

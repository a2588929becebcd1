"""Mixed negatives: exact in-batch / catalogue counts per position, the candidate table, log q."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from generative_recommenders.modeling.mixed_negatives import MixedNegativesSampler
from generative_recommenders.modeling.negatives import NegativesSharing

CATALOGUE = torch.tensor([2, 3, 5, 7, 9, 11], dtype=torch.int64)
COUNTS = torch.tensor([0, 0, 6, 3, 0, 1, 0, 0, 0, 2, 0, 0], dtype=torch.int64)  # 7, 11: count 0
BATCH_IDS = torch.tensor([[5, 2, 2, 0], [9, 5, 5, 0]], dtype=torch.int64)  # 5 x3, 2 x2, 9 x1


def _sampler(num_in_batch: int = 3, num_catalogue: int = 5, catalogue: str = "uniform", **kw):
    table = nn.Embedding(12, 4)
    sampler = MixedNegativesSampler(
        table,
        CATALOGUE,
        l2_norm=False,
        l2_norm_eps=1e-6,
        num_in_batch=num_in_batch,
        num_catalogue=num_catalogue,
        catalogue=catalogue,
        item_counts=COUNTS,
        generator=torch.Generator().manual_seed(0),
        **kw,
    )
    flat = BATCH_IDS.reshape(-1)
    sampler.process_batch(flat, flat != 0, table(flat))
    return sampler, table


@pytest.mark.parametrize("catalogue", ["uniform", "popularity"])
def test_each_position_draws_exactly_the_configured_counts_from_each_part(catalogue):
    sampler, _ = _sampler(catalogue=catalogue)
    assert sampler.num_to_sample == 8
    ids = sampler.candidate_ids()
    assert ids.tolist() == [2, 5, 9, 2, 3, 5, 7, 9, 11]  # batch's distinct items, then catalogue
    slots = sampler.draw_slots(500, 8, torch.device("cpu"))
    assert slots.shape == (500, 8)
    assert bool((slots[:, :3] < 3).all()) and bool((slots[:, 3:] >= 3).all())
    assert set(ids[slots[:, :3]].unique().tolist()) == {2, 5, 9}  # only batch items
    drawn = set(ids[slots[:, 3:]].unique().tolist())
    expected = {2, 3, 5, 7, 9, 11} if catalogue == "uniform" else {2, 3, 5, 9}
    assert drawn == expected  # by popularity, the zero-count 7 and 11 never


@pytest.mark.parametrize("sharing", [NegativesSharing.ROW, NegativesSharing.BATCH])
def test_shared_draws_keep_the_counts(sharing):
    sampler, _ = _sampler()
    rows = torch.tensor([0, 0, 1])
    slots, groups = sampler.draw_shared_slots(sharing, 8, rows, batch_size=2)
    assert slots.shape[1] == 8 and bool((slots[:, :3] < 3).all())
    assert bool((slots[:, 3:] >= 3).all()) and groups.shape == rows.shape


def test_lookup_equals_the_candidate_table_and_passes_gradients_to_both_parts():
    sampler, table = _sampler()
    slots = sampler.draw_slots(40, 8, torch.device("cpu"))
    looked_up = sampler.make_lookup(slots.numel())(slots)
    assert looked_up.shape == (40, 8, 4)
    torch.testing.assert_close(looked_up, sampler.candidate_table()[slots])
    torch.testing.assert_close(looked_up, table(sampler.candidate_ids()[slots]))
    looked_up.sum().backward()
    used = sampler.candidate_ids()[slots].unique()
    assert bool((table.weight.grad[used].abs().sum(1) > 0).all())


def test_candidate_slots_is_none_when_ids_repeat_and_the_parts_slots_otherwise():
    both, _ = _sampler()
    assert both.candidate_slots(torch.tensor([5, 3])) is None
    batch_only, _ = _sampler(num_catalogue=0)
    assert batch_only.candidate_ids().tolist() == [2, 5, 9]
    assert batch_only.candidate_slots(torch.tensor([5, 3, 9])).tolist() == [1, -1, 2]
    catalogue_only, _ = _sampler(num_in_batch=0)
    assert catalogue_only.candidate_ids().tolist() == CATALOGUE.tolist()
    assert catalogue_only.candidate_slots(torch.tensor([5, 4])).tolist() == [2, -1]
    assert bool((catalogue_only.draw_slots(10, 5, torch.device("cpu")) < 6).all())


@pytest.mark.parametrize("catalogue", ["uniform", "popularity"])
def test_log_q_is_the_mixture_of_in_batch_frequency_and_catalogue_probability(catalogue):
    sampler, _ = _sampler(num_in_batch=3, num_catalogue=5, catalogue=catalogue)
    batch_q = {2: 2 / 6, 5: 3 / 6, 9: 1 / 6}  # 6 valid positions
    if catalogue == "uniform":
        catalogue_q = {i: 1 / 6 for i in CATALOGUE.tolist()}
    else:
        catalogue_q = {2: 6 / 12, 3: 3 / 12, 5: 1 / 12, 7: 0.0, 9: 2 / 12, 11: 0.0}
    expected = [
        math.log((3 * batch_q.get(i, 0.0) + 5 * catalogue_q[i]) / 8)
        if batch_q.get(i, 0.0) + catalogue_q[i] > 0
        else 0.0  # never drawn: kept finite
        for i in sampler.candidate_ids().tolist()
    ]
    torch.testing.assert_close(sampler.candidate_log_q(), torch.tensor(expected))


def test_asking_for_another_count_is_refused():
    sampler, _ = _sampler()
    with pytest.raises(ValueError, match="3 \\+ 5 negatives per position, but 16"):
        sampler.draw_slots(4, 16, torch.device("cpu"))


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"num_in_batch": 0, "num_catalogue": 0}, "expected at least one negative in total"),
        ({"num_in_batch": -1}, "MixedNegativesSampler.num_in_batch=-1"),
        ({"catalogue": "global"}, "MixedNegativesSampler.catalogue='global': expected one of"),
        ({"exponent": 0.5}, "applies to catalogue='popularity' only"),
    ],
)
def test_bad_settings_are_refused(kwargs, expected):
    with pytest.raises(ValueError, match=expected):
        _sampler(**kwargs)

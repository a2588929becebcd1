"""Metrics as functions of ranks, against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from generative_recommenders.evaluation.metrics import per_user_metrics, rated_user_metrics

RANKS = torch.tensor([1, 2, 10, 11, 2500, 2501], dtype=torch.int64)


def test_hit_rates_ndcg_and_mrr_by_hand():
    m = per_user_metrics(RANKS, k_max=2500)
    assert m["hr@1"].tolist() == [1, 0, 0, 0, 0, 0]
    assert m["hr@10"].tolist() == [1, 1, 1, 0, 0, 0]
    assert m["hr@1000"].tolist() == [1, 1, 1, 1, 0, 0]
    expected_ndcg10 = [1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0, 0.0]
    assert m["ndcg@10"].tolist() == pytest.approx(expected_ndcg10)
    assert m["ndcg@1"].tolist() == [1, 0, 0, 0, 0, 0]
    assert m["ndcg@200"][3].item() == pytest.approx(1 / math.log2(12))
    # 2500 is within the cap; 2501 is a miss and counts as k_max + 1.
    assert m["mrr"].tolist() == pytest.approx([1, 1 / 2, 1 / 10, 1 / 11, 1 / 2500, 1 / 2501])
    assert list(m) == [
        "hr@1", "hr@10", "hr@50", "hr@100", "hr@200", "hr@500", "hr@1000",
        "ndcg@1", "ndcg@10", "ndcg@50", "ndcg@100", "ndcg@200", "mrr",
    ]  # fmt: skip


def test_a_small_catalogue_caps_every_cutoff():
    # Catalogue of 8 items: k_max = 8, a filtered target has rank 9 and is a miss even for hr@10.
    m = per_user_metrics(torch.tensor([8, 9, 30]), k_max=8)
    assert m["hr@10"].tolist() == [1, 0, 0]
    assert m["hr@1000"].tolist() == [1, 0, 0]
    assert m["ndcg@50"].tolist() == pytest.approx([1 / math.log2(9), 0, 0])
    assert m["mrr"].tolist() == pytest.approx([1 / 8, 1 / 9, 1 / 9])


def test_rated_subset_keys():
    assert list(rated_user_metrics(RANKS, 2500)) == ["hr@10", "hr@50", "ndcg@10", "mrr"]

"""The evaluator against a brute-force reference: filtering, caps, partial runs, rated and sampled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generative_recommenders.evaluation.evaluator import Evaluator
from generative_recommenders.evaluation.sampled import SampledNegatives
from generative_recommenders.retrieval import CandidateIndex, MIPSBruteForceTopK
from tests.evaluation.evaluation_fixtures import World, evaluate_users, reference_metrics

USERS = list(range(7))


@pytest.mark.parametrize("filter_seen", ["window", "all", "none"])
def test_metrics_equal_the_brute_force_reference(filter_seen):
    world = World()
    # 20 items, k_max = min(2500, 20): the catalogue is smaller than k plus the history width.
    result = evaluate_users(world, USERS, batch_size=3, filter_seen=filter_seen)
    ranks = [world.reference_rank(u, filter_seen) for u in USERS]
    expected = reference_metrics(ranks, k_max=20)
    assert result["num_users"] == 7
    for name, value in expected.items():
        assert result[name] == pytest.approx(value), name


def test_filtering_the_whole_history_differs_from_the_window():
    world = World()
    window = [world.reference_rank(u, "window") for u in USERS]
    full = [world.reference_rank(u, "all") for u in USERS]
    assert window != full  # the fixture has users whose older items outrank the target
    assert all(f <= w for f, w in zip(full, window, strict=True))
    a = evaluate_users(world, USERS, 3, filter_seen="window")
    b = evaluate_users(world, USERS, 3, filter_seen="all")
    assert a["mrr"] == pytest.approx(reference_metrics(window, 20)["mrr"])
    assert b["mrr"] == pytest.approx(reference_metrics(full, 20)["mrr"])


def test_all_needs_seen_fn():
    world = World()
    evaluator = Evaluator(lambda index: MIPSBruteForceTopK(None, index), filter_seen="all")
    with pytest.raises(ValueError, match="seen_fn"):
        evaluator.evaluate(world.batches(USERS, 3), world.query_fn, world.index())


def test_k_max_caps_ranks():
    world = World()
    result = evaluate_users(world, USERS, 3, k_max=3)
    ranks = [world.reference_rank(u, "window") for u in USERS]
    assert result["mrr"] == pytest.approx(reference_metrics(ranks, 3)["mrr"])
    assert result["hr@10"] == pytest.approx(reference_metrics(ranks, 3)["hr@10"])


def test_partial_evaluation_uses_the_first_batches_only():
    world = World()
    evaluator = Evaluator(lambda index: MIPSBruteForceTopK(None, index))
    result = evaluator.evaluate(
        world.batches(USERS, 3), world.query_fn, world.index(), num_batches=1
    )
    ranks = [world.reference_rank(u, "window") for u in USERS[:3]]
    assert result["num_users"] == 3
    assert result["ndcg@10"] == pytest.approx(reference_metrics(ranks, 20)["ndcg@10"])


def test_rated_metrics_cover_highly_rated_targets_only():
    world = World()
    result = evaluate_users(world, USERS, 3)
    rated_users = [u for u in USERS if world.ratings[u] >= 4]
    ranks = [world.reference_rank(u, "window") for u in rated_users]
    expected = reference_metrics(ranks, 20)
    assert result["num_users_rated4"] == len(rated_users) == 3
    for name in ("hr@10", "hr@50", "ndcg@10", "mrr"):
        assert result[f"{name}_rated4"] == pytest.approx(expected[name])
    no_ratings = evaluate_users(World(rated=False), USERS, 3)
    assert not [key for key in no_ratings if "rated" in key]


def test_an_existing_retriever_can_be_passed_directly():
    world = World()
    retriever = MIPSBruteForceTopK(None, world.index(), query_chunk_size=1)
    result = Evaluator().evaluate(world.batches(USERS, 4), world.query_fn, retriever)
    ranks = [world.reference_rank(u, "window") for u in USERS]
    assert result["hr@1"] == pytest.approx(reference_metrics(ranks, 20)["hr@1"])


def test_sampled_negatives_are_distinct_eligible_and_seeded():
    catalogue = np.arange(1, 301, dtype=np.int64) * 2
    sampler = SampledNegatives("uni100", catalogue, None, seed=5)
    excluded = catalogue[:150]
    a = sampler.sample(7, excluded)
    assert a.shape == (100,) and len(set(a.tolist())) == 100
    assert not set(a.tolist()) & set(excluded.tolist())
    assert set(a.tolist()) <= set(catalogue.tolist())
    assert np.array_equal(a, sampler.sample(7, excluded))
    assert not np.array_equal(a, sampler.sample(8, excluded))
    # Fewer eligible items than 100: all of them.
    assert sorted(sampler.sample(1, catalogue[:250]).tolist()) == catalogue[250:].tolist()


def test_popularity_sampling_never_draws_items_without_mass():
    catalogue = np.arange(1, 201, dtype=np.int64)
    popularity = np.zeros(201)
    popularity[1:151] = np.arange(1, 151)
    sampler = SampledNegatives("pop100", catalogue, popularity, seed=0)
    draws = sampler.sample(3, np.array([150, 149], dtype=np.int64))
    assert len(draws) == 100 and draws.max() <= 148
    with pytest.raises(ValueError, match="indexed by item id"):
        SampledNegatives("pop100", catalogue, popularity[:50], seed=0)


def test_sampled_mode_is_labelled_and_independent_of_batching():
    world = World(num_users=7, num_items=150)
    a = evaluate_users(world, USERS, 2, sampled_negatives="uni100", seed=3)
    b = evaluate_users(world, USERS, 5, sampled_negatives="uni100", seed=3)
    sampled = {k: v for k, v in a.items() if k.startswith("sampled_uni100/")}
    assert set(sampled) >= {"sampled_uni100/hr@10", "sampled_uni100/ndcg@10", "sampled_uni100/mrr"}
    for key, value in sampled.items():
        assert b[key] == pytest.approx(value)
    # Reference: rank each target among its 100 negatives by direct scoring.
    sampler = SampledNegatives("uni100", world.catalogue.numpy(), None, seed=3)
    score = dict(zip(world.catalogue.tolist(), world.embeddings, strict=True))
    hits = 0
    for user in USERS:
        window = world.histories[user][-world.window :]
        negatives = sampler.sample(user + 100, np.array(window + [world.targets[user]]))
        target_score = float(world.queries[user] @ score[world.targets[user]])
        rank = 1 + sum(
            float(world.queries[user] @ score[int(n)]) >= target_score for n in negatives
        )
        hits += rank <= 10
    assert a["sampled_uni100/hr@10"] == pytest.approx(hits / 7)
    # The full-ranking keys are still there, unprefixed.
    assert "hr@10" in a and a["num_users"] == 7


def test_padding_rows_are_not_counted():
    world = World()
    batches = world.batches(USERS, 7)
    batches[0].target_ids[6] = 0
    result = Evaluator(lambda index: MIPSBruteForceTopK(None, index)).evaluate(
        batches, world.query_fn, world.index()
    )
    assert result["num_users"] == 6


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="filter_seen"):
        Evaluator(filter_seen="some")
    with pytest.raises(ValueError, match="sampled_negatives"):
        Evaluator(sampled_negatives="uni50")
    with pytest.raises(ValueError, match="top_k_method"):
        Evaluator().evaluate([], lambda b: b, CandidateIndex(torch.tensor([1]), torch.zeros(1, 2)))


def test_no_filter_ranks_history_items_too():
    world = World()
    window = [world.reference_rank(u, "window") for u in USERS]
    none = [world.reference_rank(u, "none") for u in USERS]
    assert none != window  # seen items compete with the target (or the target was seen)
    for user, w, n in zip(USERS, window, none, strict=True):
        if world.targets[user] in world.histories[user][-world.window :]:
            assert w == len(world.catalogue) + 1 and n <= len(world.catalogue)  # rankable now
        else:
            assert n >= w  # more competitors, never a better rank
    result = evaluate_users(world, USERS, 3, filter_seen="none")
    assert result["mrr"] == pytest.approx(reference_metrics(none, 20)["mrr"])

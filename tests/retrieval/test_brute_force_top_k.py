"""Brute-force retrieval: top-k against a full sort, chunking, filtering, exact target ranks."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.modeling.similarity.mol import MoLSimilarity
from generative_recommenders.retrieval import (
    BruteForceTopK,
    CandidateIndex,
    MIPSBruteForceTopK,
    MoLBruteForceTopK,
)
from tests.objective.objective_helpers import LearnedSimilarity

D = 6


def _mol() -> MoLSimilarity:
    torch.manual_seed(0)
    return MoLSimilarity(
        query_embedding_dim=D,
        item_embedding_dim=D,
        dot_product_dimension=4,
        query_dot_product_groups=3,
        item_dot_product_groups=2,
        temperature=0.5,
        uid_embedding_hash_sizes=[11],
        query_nonlinearity="swiglu",
        item_nonlinearity="swiglu",
    ).eval()


SIMILARITIES = {
    "dot": lambda: DotProductSimilarity(),
    "learned": lambda: LearnedSimilarity(D).eval(),
    "mol": _mol,
}


def _data(num_items: int = 23, num_queries: int = 9, history: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    # A gappy catalogue in shuffled order.
    ids = (torch.randperm(num_items, generator=gen) * 3 + 1).to(torch.int64)
    embeddings = torch.randn(num_items, D, generator=gen)
    queries = torch.randn(num_queries, D, generator=gen)
    invalid = ids[torch.randint(0, num_items, (num_queries, history), generator=gen)]
    invalid[0] = 0  # a row with nothing to filter
    invalid[1, 2:] = 0  # padding inside a row
    users = torch.randint(0, 11, (num_queries,), generator=gen)
    return ids, embeddings, queries, invalid, users


def _full_scores(similarity, queries, embeddings, users, invalid, ids):
    with torch.no_grad():
        scores, _ = similarity(queries, embeddings, users)
    filtered = (ids.view(1, -1, 1) == invalid.unsqueeze(1)).any(-1)
    return scores.masked_fill(filtered, float("-inf")), filtered


@pytest.mark.parametrize("name", list(SIMILARITIES))
def test_top_k_equals_a_full_sort_with_history_filtered(name):
    similarity = SIMILARITIES[name]()
    ids, embeddings, queries, invalid, users = _data()
    retriever = BruteForceTopK(similarity, CandidateIndex(ids, embeddings))
    k = 7
    scores, top_ids = retriever.top_k(queries, k, invalid, users)
    full, _ = _full_scores(similarity, queries, embeddings, users, invalid, ids)
    expected_scores, order = torch.sort(full, dim=1, descending=True)
    assert torch.equal(top_ids, ids[order[:, :k]])
    torch.testing.assert_close(scores, expected_scores[:, :k])
    for row in range(len(queries)):
        assert not set(top_ids[row].tolist()) & (set(invalid[row].tolist()) - {0})


@pytest.mark.parametrize("name", ["dot", "mol"])
@pytest.mark.parametrize("query_chunk", [1, 4, 100])
@pytest.mark.parametrize("item_chunk", [1, 5, 8, 1000])
def test_chunked_equals_unchunked_even_when_k_exceeds_what_is_left(name, query_chunk, item_chunk):
    similarity = SIMILARITIES[name]()
    ids, embeddings, queries, invalid, users = _data()
    index = CandidateIndex(ids, embeddings)
    whole = BruteForceTopK(similarity, index, query_chunk_size=1000, item_chunk_size=1000)
    chunked = BruteForceTopK(similarity, index, query_chunk, item_chunk)
    for k in (1, 5, 21, 30):  # 21 and 30 exceed what is left after filtering up to 4 items
        expected_scores, expected_ids = whole.top_k(queries, k, invalid, users)
        scores, got_ids = chunked.top_k(queries, k, invalid, users)
        assert torch.equal(got_ids, expected_ids)
        torch.testing.assert_close(scores, expected_scores)
        assert got_ids.shape == (len(queries), k)
    ranks = chunked.target_ranks(queries, ids[:9], invalid, users)
    assert torch.equal(ranks, whole.target_ranks(queries, ids[:9], invalid, users))


def test_rows_with_fewer_candidates_than_k_are_padded_with_id_0_and_minus_inf():
    ids, embeddings, queries, invalid, _ = _data(num_items=6, history=3)
    retriever = MIPSBruteForceTopK(None, CandidateIndex(ids, embeddings), 2, 4)
    scores, top_ids = retriever.top_k(queries, 10, invalid)
    for row in range(len(queries)):
        banned = set(invalid[row].tolist()) - {0}
        valid = 6 - len(banned)
        assert set(top_ids[row, :valid].tolist()) == set(ids.tolist()) - banned
        assert top_ids[row, valid:].tolist() == [0] * (10 - valid)
        assert bool(torch.isinf(scores[row, valid:]).all()) and bool(
            (scores[row, valid:] < 0).all()
        )
        assert bool(torch.isfinite(scores[row, :valid]).all())


@pytest.mark.parametrize("name", list(SIMILARITIES))
@pytest.mark.parametrize("item_chunk", [3, 1000])
def test_target_ranks_equal_a_brute_force_count(name, item_chunk):
    similarity = SIMILARITIES[name]()
    ids, embeddings, queries, invalid, users = _data(seed=1)
    retriever = BruteForceTopK(similarity, CandidateIndex(ids, embeddings), 4, item_chunk)
    targets = ids[torch.arange(9) * 2]
    ranks = retriever.target_ranks(queries, targets, invalid, users)
    full, filtered = _full_scores(similarity, queries, embeddings, users, invalid, ids)
    for row in range(len(queries)):
        column = int((ids == targets[row]).nonzero())
        if bool(filtered[row, column]):
            assert int(ranks[row]) == len(ids) + 1
            continue
        target_score = float(full[row, column])
        others = [float(full[row, j]) for j in range(len(ids)) if j != column]
        assert int(ranks[row]) == 1 + sum(score >= target_score for score in others)


@pytest.mark.parametrize("item_chunk", [2, 1000])
def test_ties_count_against_the_target_and_misses_rank_past_the_catalogue(item_chunk):
    # Integer-valued embeddings make every dot product exact, so ties are exact.
    ids = torch.tensor([10, 20, 30, 40, 50], dtype=torch.int64)
    embeddings = torch.tensor([[1.0, 0], [2, 0], [2, 0], [3, 0], [0, 1]])
    query = torch.tensor([[1.0, 0]]).expand(5, 2)
    targets = torch.tensor([20, 30, 50, 40, 99])  # 99: not in the catalogue
    invalid = torch.tensor([[0, 0], [0, 0], [0, 0], [40, 0], [0, 0]])
    retriever = MIPSBruteForceTopK(None, CandidateIndex(ids, embeddings), 2, item_chunk)
    ranks = retriever.target_ranks(query, targets, invalid)
    # 20 and 30 tie at 2 behind 40 (3): both rank 3. 50 scores 0, last: rank 5. 40 is filtered.
    assert ranks.tolist() == [3, 3, 5, 6, 6]
    assert retriever.target_ranks(query[:1], torch.tensor([0])).tolist() == [6]


def test_prepared_items_are_rebuilt_when_the_embeddings_change():
    ids, embeddings, queries, invalid, _ = _data()
    index = CandidateIndex(ids, embeddings)
    retriever = MIPSBruteForceTopK(DotProductSimilarity(), index)
    before = retriever.top_k(queries, 3, invalid)[1]
    index.update_embeddings(-embeddings)
    after_scores, after = retriever.top_k(queries, 3, invalid)
    full, _ = _full_scores(DotProductSimilarity(), queries, -embeddings, None, invalid, ids)
    assert torch.equal(after, ids[full.argsort(dim=1, descending=True)[:, :3]])
    assert not torch.equal(before, after)


def test_mips_refuses_a_learned_similarity_and_mol_top_k_runs_end_to_end():
    ids, embeddings, queries, invalid, users = _data()
    index = CandidateIndex(ids, embeddings)
    with pytest.raises(ValueError, match="MoLBruteForceTopK"):
        MIPSBruteForceTopK(_mol(), index)
    scores, top_ids = MoLBruteForceTopK(_mol(), index, 3, 5).top_k(queries, 4, invalid, users)
    assert top_ids.shape == (9, 4) and bool(torch.isfinite(scores).all())


def test_score_items_matches_the_full_scores_and_unknown_ids_score_minus_inf():
    similarity = SIMILARITIES["mol"]()
    ids, embeddings, queries, invalid, users = _data()
    retriever = BruteForceTopK(similarity, CandidateIndex(ids, embeddings), 4)
    picks = torch.stack([ids[:3], ids[3:6], ids[6:9]] * 3)
    picks[0, 1] = 0
    got = retriever.score_items(queries, picks, users)
    full, _ = _full_scores(similarity, queries, embeddings, users, torch.zeros(9, 1).long(), ids)
    positions = (picks.unsqueeze(-1) == ids).float().argmax(-1)
    expected = full.gather(1, positions)
    expected[0, 1] = float("-inf")
    torch.testing.assert_close(got, expected)


def test_index_rejects_padding_and_duplicates():
    with pytest.raises(ValueError, match="positive"):
        CandidateIndex(torch.tensor([0, 1]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="distinct"):
        CandidateIndex(torch.tensor([3, 3]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[2, D\]"):
        CandidateIndex(torch.tensor([1, 2]), torch.zeros(3, 2))

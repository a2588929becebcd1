"""The in-process Recommender on a tiny trained run with string user and item ids."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
import torch

from generative_recommenders.errors import UserInputError
from generative_recommenders.recommend import History, Recommender
from tests.recommend.conftest import item_name
from tests.recommend.helpers import brute_force, query_like_evaluation


def _store_history(rec: Recommender, user: str):
    row = int(np.searchsorted(rec.store.user_ids, rec.users.encode_one(user)))
    start, end = int(rec.store.offsets[row]), int(rec.store.offsets[row + 1])
    return np.asarray(rec.store.item_ids[start:end]), np.asarray(rec.store.timestamps[start:end])


def _codes(rec: Recommender, item_ids) -> np.ndarray:
    codes, unknown = rec.items.encode(item_ids)
    assert unknown == []
    return codes


@pytest.mark.parametrize("user", ["u1", "u2", "u17"])
def test_top_k_equals_a_brute_force_ranking(recommender, user) -> None:
    rec = recommender
    items, times = _store_history(rec, user)
    query = query_like_evaluation(
        rec.encoder, items, times, rec.config.max_sequence_length, int(times[-1])
    )
    expected_codes, expected_scores = brute_force(
        rec.encoder, query, rec.items.codes, rec.config.item_l2_norm, set(items.tolist()), k=7
    )
    frame = rec.recommend([user], k=7)
    assert list(frame["user_id"]) == [user] * 7
    assert list(frame["rank"]) == list(range(1, 8))
    assert _codes(rec, frame["item_id"]).tolist() == expected_codes.tolist()
    np.testing.assert_allclose(frame["score"].to_numpy(), expected_scores, rtol=1e-5, atol=1e-6)


def test_viewed_and_excluded_items_never_appear(recommender) -> None:
    rec = recommender
    users = rec.users.originals()
    excluded = [item_name(3), item_name(4)]
    frame = rec.recommend(users, k=15, exclude_items=excluded)
    assert set(frame["user_id"]) == set(users)
    for user, group in frame.groupby("user_id"):
        viewed = set(rec.items.decode(_store_history(rec, user)[0]))
        assert viewed.isdisjoint(group["item_id"]), user
        assert set(excluded).isdisjoint(group["item_id"])
        assert len(group) == min(15, len(rec.items.codes) - len(viewed | set(excluded)))


def test_without_the_filter_viewed_items_compete(recommender) -> None:
    rec = recommender
    items, times = _store_history(rec, "u2")
    query = query_like_evaluation(
        rec.encoder, items, times, rec.config.max_sequence_length, int(times[-1])
    )
    expected, _ = brute_force(rec.encoder, query, rec.items.codes, True, set(), k=10)
    frame = rec.recommend(["u2"], k=10, filter_viewed=False)
    assert _codes(rec, frame["item_id"]).tolist() == expected.tolist()


def test_string_ids_round_trip_and_titles_are_joined(recommender) -> None:
    rec = recommender
    frame = rec.recommend(["u5"], k=5)
    assert all(isinstance(i, str) and i.startswith("sku-") for i in frame["item_id"])
    assert list(frame["title"]) == [f"Title of {i}" for i in frame["item_id"]]
    # What comes out goes back in: a new history made of the recommended ids is fully known.
    again = rec.recommend_for_histories({"new": list(frame["item_id"])}, k=3, on_unknown="error")
    assert list(again["user_id"]) == ["new"] * 3
    assert set(again["item_id"]).isdisjoint(frame["item_id"])


def test_a_store_users_history_given_as_events_gives_the_same_top_k(recommender) -> None:
    rec = recommender
    items, times = _store_history(rec, "u9")
    events = pd.DataFrame(
        {"user_id": "u9", "item_id": rec.items.decode(items), "timestamp": times}
    ).iloc[::-1]  # reversed rows: the timestamps put them back in order
    from_events = rec.recommend_for_histories(events, k=6)
    from_store = rec.recommend(["u9"], k=6)
    assert list(from_events["item_id"]) == list(from_store["item_id"])
    np.testing.assert_allclose(from_events["score"], from_store["score"], rtol=1e-5, atol=1e-6)


def test_unknown_users_follow_on_unknown(recommender, caplog) -> None:
    rec = recommender
    with caplog.at_level(logging.WARNING):
        frame = rec.recommend(["u1", "nobody", "u2"], k=3)
    assert set(frame["user_id"]) == {"u1", "u2"}
    assert frame.attrs["unknown_users"] == ["nobody"]
    assert "nobody" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert set(rec.recommend(["nobody", "u1"], k=3, on_unknown="skip")["user_id"]) == {"u1"}
    assert "nobody" not in caplog.text
    with pytest.raises(UserInputError, match="nobody"):
        rec.recommend(["u1", "nobody"], k=3, on_unknown="error")


def test_unknown_items_and_all_unknown_histories(recommender, caplog) -> None:
    rec = recommender
    histories = [
        History("a", [item_name(1), "ghost", item_name(2)]),
        History("b", ["ghost", "phantom"]),
    ]
    with caplog.at_level(logging.WARNING):
        frame = rec.recommend_for_histories(histories, k=4)
    assert set(frame["user_id"]) == {"a"}
    assert frame.attrs["empty_histories"] == ["b"]
    assert "ghost" in caplog.text and "phantom" in caplog.text and "b" in caplog.text
    clean = rec.recommend_for_histories({"a": [item_name(1), item_name(2)]}, k=4)
    assert list(frame["item_id"]) == list(clean["item_id"])  # unknown items are just dropped
    with pytest.raises(UserInputError, match="ghost"):
        rec.recommend_for_histories(histories, k=4, on_unknown="error")


def test_cached_incremental_encoding_equals_a_full_encode(recommender) -> None:
    rec = recommender
    names = [item_name(i) for i in range(1, 41)]
    full = {
        "a": (names[0:9], list(range(100, 190, 10))),
        "b": (names[10:14], list(range(500, 540, 10))),
        "long": (names[5:30], list(range(1000, 1250, 10))),  # outgrows the 20-event window
    }
    cache = rec.history_cache()
    splits = {"a": [4, 7, 9], "b": [1, 2, 4], "long": [15, 18, 25]}
    previous = {u: 0 for u in full}
    for step in range(3):
        part = []
        for user, (items, times) in full.items():
            lo, hi = previous[user], splits[user][step]
            part.append(History(user, items[lo:hi], times[lo:hi]))
            previous[user] = hi
        cached = rec.recommend_for_histories(part, k=5, cache=cache)
        fresh = rec.recommend_for_histories(
            [History(u, full[u][0][: previous[u]], full[u][1][: previous[u]]) for u in full], k=5
        )
        assert list(cached["user_id"]) == list(fresh["user_id"])
        assert list(cached["item_id"]) == list(fresh["item_id"])
        np.testing.assert_allclose(cached["score"], fresh["score"], rtol=1e-4, atol=1e-5)
    assert cache.incremental_calls >= 6  # a and b every time, long while it fits the window
    assert cache.full_calls >= 1  # long, once it outgrew the window


def test_similar_items_by_cosine_and_by_the_model(recommender) -> None:
    rec = recommender
    frame = rec.similar_items([item_name(7), "ghost"], k=5, on_unknown="skip")
    assert set(frame["query_item_id"]) == {item_name(7)}
    assert item_name(7) not in set(frame["item_id"])
    table = rec.encoder.get_item_embeddings(torch.as_tensor(rec.items.codes)).detach()
    table = table / table.norm(dim=-1, keepdim=True)
    me = rec.items.codes.tolist().index(rec.items.encode_one(item_name(7)))
    cosine = (table @ table[me]).numpy()
    cosine[me] = -np.inf
    order = np.argsort(-cosine, kind="stable")[:5]
    assert _codes(rec, frame["item_id"]).tolist() == rec.items.codes[order].tolist()
    np.testing.assert_allclose(frame["score"], cosine[order], rtol=1e-5, atol=1e-6)
    model = rec.similar_items([item_name(7)], k=5, method="model")
    assert len(model) == 5 and item_name(7) not in set(model["item_id"])


def test_checkpoint_choices(run_dir, caplog) -> None:
    with caplog.at_level(logging.INFO):
        best = Recommender.from_run(run_dir, checkpoint="best")
    assert best.run.checkpoint_path.name == "last.pt" and "no best.pt" in caplog.text
    latest = Recommender.from_run(run_dir, checkpoint="latest")
    by_path = Recommender.from_run(run_dir, checkpoint=str(latest.run.checkpoint_path))
    assert by_path.recommend(["u3"], k=3).equals(latest.recommend(["u3"], k=3))
    with pytest.raises(UserInputError, match="no such checkpoint"):
        Recommender.from_run(run_dir, checkpoint=str(run_dir / "nope.pt"))
    with pytest.raises(UserInputError, match="no such folder"):
        Recommender.from_run(run_dir / "missing")


def test_mol_run_ranks_with_the_full_mol_score(mol_run_dir) -> None:
    rec = Recommender.from_run(mol_run_dir)
    items, times = _store_history(rec, "u4")
    query = query_like_evaluation(
        rec.encoder, items, times, rec.config.max_sequence_length, int(times[-1])
    )
    expected_codes, expected_scores = brute_force(
        rec.encoder, query, rec.items.codes, rec.config.item_l2_norm, set(items.tolist()), k=5
    )
    frame = rec.recommend(["u4"], k=5)
    assert _codes(rec, frame["item_id"]).tolist() == expected_codes.tolist()
    np.testing.assert_allclose(frame["score"], expected_scores, rtol=1e-4, atol=1e-5)

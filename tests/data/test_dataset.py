"""Windows over the store, positional sampling, seen items and collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generative_recommenders.data.dataset import SequenceDataset, collate_sequences
from generative_recommenders.errors import UserInputError
from tests.data.conftest import small_store

# small_store: user 10 has items 1..6 at times 1..6 (ratings item / 2), user 20 items 7, 8
# (times 100, 200), user 30 a single item 9.


def test_window_last_item_target(data_dir):
    ds = SequenceDataset(small_store(data_dir), max_sequence_length=4, ignore_last_n=0)
    assert ds.rows.tolist() == [0, 1]  # user 30 (one event) has no history + target
    item = ds[0]
    # History 1..5, most recent 4 kept, oldest first; target 6.
    assert item["ids"].tolist() == [2, 3, 4, 5]
    assert item["length"] == 4
    assert item["ratings"].tolist() == [1.0, 1.5, 2.0, 2.5]
    assert item["timestamps"].tolist() == [2, 3, 4, 5]
    assert (item["target_id"], item["target_rating"], item["target_timestamp"]) == (6, 3.0, 6)
    assert (item["row"], item["user_id"]) == (0, 10)
    short = ds[1]
    assert short["ids"].tolist() == [7, 0, 0, 0]  # right-padded
    assert short["timestamps"].tolist() == [100, 0, 0, 0]
    assert short["ratings"].tolist() == [3.5, 0.0, 0.0, 0.0]
    assert (short["length"], short["target_id"], short["user_id"]) == (1, 8, 20)


def test_window_ignore_last_one_and_two(data_dir):
    store = small_store(data_dir)
    train = SequenceDataset(store, max_sequence_length=10, ignore_last_n=1)
    assert len(train) == 1  # user 20 has 2 events: fewer than 1 + 2
    item = train[0]
    assert item["ids"].tolist() == [1, 2, 3, 4, 0, 0, 0, 0, 0, 0]
    assert (item["length"], item["target_id"]) == (4, 5)
    valid = SequenceDataset(store, max_sequence_length=10, ignore_last_n=2)
    assert valid[0]["ids"][:3].tolist() == [1, 2, 3] and valid[0]["target_id"] == 4


def test_collate_types_and_values(data_dir):
    ds = SequenceDataset(small_store(data_dir), max_sequence_length=3, ignore_last_n=0)
    batch = collate_sequences([ds[0], ds[1]])
    assert batch.ids.dtype == torch.int64 and batch.timestamps.dtype == torch.int64
    assert batch.ratings.dtype == torch.float32 and batch.target_ratings.dtype == torch.float32
    assert batch.ids.tolist() == [[3, 4, 5], [7, 0, 0]]
    assert batch.lengths.tolist() == [3, 1]
    assert batch.target_ids.tolist() == [6, 8]
    assert batch.target_timestamps.tolist() == [6, 200]
    assert batch.rows.tolist() == [0, 1] and batch.user_ids.tolist() == [10, 20]


def test_seen_items_is_the_whole_history_before_the_target(data_dir):
    store = small_store(data_dir)
    ds = SequenceDataset(store, max_sequence_length=2, ignore_last_n=0)
    seen = ds.seen_items(torch.tensor([1, 0]))
    assert seen.dtype == torch.int64
    assert seen.tolist() == [[7, 0, 0, 0, 0], [1, 2, 3, 4, 5]]
    train = SequenceDataset(store, max_sequence_length=2, ignore_last_n=1)
    assert train.seen_items(torch.tensor([0])).tolist() == [[1, 2, 3, 4]]


def _long_store(data_dir):
    from generative_recommenders.data.store import SequenceStore, write_store

    n = 60
    write_store(
        data_dir / "long",
        user_ids=np.array([1, 2]),
        offsets=np.array([0, n, 2 * n]),
        item_ids=np.arange(1, 2 * n + 1),
        ratings=np.zeros(2 * n),
        timestamps=np.arange(2 * n),
        meta={},
    )
    return SequenceStore.open(data_dir, "long")


def test_positional_sampling_is_a_deterministic_ordered_subset(data_dir):
    store = _long_store(data_dir)
    a = SequenceDataset(store, 100, ignore_last_n=1, positional_sampling_ratio=0.5, seed=3)
    b = SequenceDataset(store, 100, ignore_last_n=1, positional_sampling_ratio=0.5, seed=3)
    x, y = a[0], b[0]
    assert np.array_equal(x["ids"], y["ids"]) and x["length"] == y["length"]
    kept = x["ids"][: x["length"]]
    assert 0 < x["length"] < 58  # a strict subset of the 58-item history
    assert np.all(np.diff(kept) > 0)  # order preserved
    assert set(kept.tolist()) <= set(range(1, 59))
    assert np.array_equal(x["timestamps"][: x["length"]], kept - 1)  # aligned with ids
    assert x["target_id"] == 59
    a.set_epoch(1)
    assert not np.array_equal(a[0]["ids"], x["ids"])
    b.set_epoch(1)
    assert np.array_equal(a[0]["ids"], b[0]["ids"])
    other_seed = SequenceDataset(store, 100, 1, positional_sampling_ratio=0.5, seed=4)
    assert not np.array_equal(other_seed[0]["ids"], x["ids"])
    full = SequenceDataset(store, 100, 1)
    assert full[0]["length"] == 58


def test_bad_arguments(data_dir):
    store = small_store(data_dir)
    with pytest.raises(UserInputError, match="max_sequence_length=0"):
        SequenceDataset(store, 0, 0)
    with pytest.raises(UserInputError, match="positional_sampling_ratio=1.5"):
        SequenceDataset(store, 4, 0, positional_sampling_ratio=1.5)


def test_pickles_by_path_not_by_value(data_dir):
    import pickle

    from generative_recommenders.data.store import SequenceStore, write_store

    n = 50_000
    write_store(
        data_dir / "big",
        user_ids=np.array([1]),
        offsets=np.array([0, n]),
        item_ids=np.arange(1, n + 1),
        ratings=np.zeros(n),
        timestamps=np.arange(n),
        meta={},
    )
    ds = SequenceDataset(SequenceStore.open(data_dir, "big"), 8, 0)
    blob = pickle.dumps(ds)
    assert len(blob) < n  # the 50,000 x 20 bytes of arrays are not in the pickle
    copy = pickle.loads(blob)
    assert copy[0]["ids"].tolist() == ds[0]["ids"].tolist() == list(range(n - 8, n))
    assert copy[0]["target_id"] == n

"""The sequence store: round trip, atomic replacement, validation on open."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from generative_recommenders.data.splits import target_fingerprint
from generative_recommenders.data.store import (
    SequenceStore,
    open_store_writer,
    store_path,
    write_store,
)
from generative_recommenders.errors import UserInputError
from tests.data.conftest import small_store


def test_round_trip(data_dir):
    items = pd.DataFrame({"item_id": [1, 2], "title": ["a, b", "c"], "genres": ["x|y", ""]})
    mapping = pd.DataFrame({"original": ["007", "x"], "item_id": [1, 2]})
    write_store(
        store_path(data_dir, "rt"),
        user_ids=np.array([5, 9]),
        offsets=np.array([0, 2, 3]),
        item_ids=np.array([2, 1, 2]),
        ratings=np.array([1.5, 2.0, 0.0]),
        timestamps=np.array([7, 8, 9]),
        meta={"has_ratings": True, "note": "kept"},
        tables={"items": items, "item_id_mapping": mapping},
    )
    store = SequenceStore.open(data_dir, "rt")
    assert isinstance(store.item_ids, np.ndarray)
    assert store.item_ids.dtype == np.int64 and store.timestamps.dtype == np.int64
    assert store.ratings.dtype == np.float32 and store.offsets.dtype == np.int64
    assert store.user_ids.tolist() == [5, 9]
    assert store.history(0).tolist() == [2, 1] and store.history(1).tolist() == [2]
    assert store.ratings.tolist() == [1.5, 2.0, 0.0]
    assert store.num_users == 2 and store.num_interactions == 3 and store.max_item_id == 2
    assert store.item_counts().tolist() == [0, 1, 2]
    assert store.catalogue_item_ids().tolist() == [1, 2]
    assert store.has_ratings and store.meta["note"] == "kept"
    assert store.items_table().title.tolist() == ["a, b", "c"]
    assert store.item_id_mapping().original.tolist() == ["007", "x"]  # leading zeros kept
    assert store.user_id_mapping() is None
    # Read-only memory maps: writing through them fails.
    with pytest.raises(ValueError):
        store.item_ids[0] = 3


def test_write_replaces_old_store_and_leaves_no_temporaries(data_dir):
    small_store(data_dir, "s")
    write_store(
        data_dir / "s",
        user_ids=np.array([1]),
        offsets=np.array([0, 2]),
        item_ids=np.array([4, 4]),
        ratings=np.zeros(2),
        timestamps=np.array([1, 2]),
        meta={},
    )
    assert SequenceStore.open(data_dir, "s").item_ids.tolist() == [4, 4]
    assert sorted(p.name for p in data_dir.iterdir()) == ["s"]


def test_failed_write_keeps_old_store(data_dir):
    small_store(data_dir, "s")
    with pytest.raises(UserInputError, match="timestamps has 1 entries"):
        write_store(
            data_dir / "s",
            user_ids=np.array([1]),
            offsets=np.array([0, 2]),
            item_ids=np.array([4, 4]),
            ratings=np.zeros(2),
            timestamps=np.array([1]),
            meta={},
        )
    assert SequenceStore.open(data_dir, "s").num_interactions == 9
    assert sorted(p.name for p in data_dir.iterdir()) == ["s"]


def test_missing_store_names_the_command(tmp_path):
    with pytest.raises(UserInputError) as e:
        SequenceStore.open(tmp_path / "tmp", "ml-1m")
    msg = str(e.value)
    assert f"no sequence store at {tmp_path / 'tmp' / 'ml-1m'}/" in msg
    assert f"python preprocess_public_data.py --dataset ml-1m --data_dir {tmp_path / 'tmp'}/" in msg
    with pytest.raises(UserInputError, match="--dataset csv --name mine"):
        SequenceStore.open(tmp_path, "mine")


def test_wrong_format_version(data_dir):
    store = small_store(data_dir)
    meta_file = store.path / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["format_version"] = 99
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(UserInputError, match="format_version is 99, expected 1"):
        SequenceStore.open(data_dir, "toy")


def test_inconsistent_arrays(data_dir):
    store = small_store(data_dir)
    np.save(store.path / "ratings.npy", np.zeros(4, dtype=np.float32))
    with pytest.raises(UserInputError, match="ratings has 4 entries, expected 9"):
        SequenceStore.open(data_dir, "toy")


def test_wrong_dtype_and_missing_array(data_dir):
    store = small_store(data_dir)
    np.save(store.path / "item_ids.npy", np.arange(9, dtype=np.float64))
    with pytest.raises(UserInputError, match="item_ids.npy: float64 .* expected 1-d int64"):
        SequenceStore.open(data_dir, "toy")
    (store.path / "item_ids.npy").unlink()
    with pytest.raises(UserInputError, match="item_ids.npy: missing array file"):
        SequenceStore.open(data_dir, "toy")


def test_corrupt_meta(data_dir):
    store = small_store(data_dir)
    (store.path / "meta.json").write_text("{not json")
    with pytest.raises(UserInputError, match="meta.json: not valid JSON"):
        SequenceStore.open(data_dir, "toy")


def test_store_writer_in_chunks_equals_write_store(data_dir):
    whole = small_store(data_dir, "whole")
    with open_store_writer(data_dir / "chunks", num_item_ids=50) as writer:
        for rows in ([0], [1, 2]):
            lo, hi = int(whole.offsets[rows[0]]), int(whole.offsets[rows[-1] + 1])
            writer.append(
                whole.user_ids[rows], whole.lengths()[rows], whole.item_ids[lo:hi],
                whole.ratings[lo:hi], whole.timestamps[lo:hi],
            )  # fmt: skip
        writer.finish({"dataset": "chunks", "has_ratings": True})
    chunks = SequenceStore.open(data_dir, "chunks")
    for name in ("offsets", "user_ids", "item_ids", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(whole, name), getattr(chunks, name), err_msg=name)
    np.testing.assert_array_equal(whole.item_counts(), chunks.item_counts())  # trimmed to max id
    for key in ("num_users", "num_interactions", "num_items", "max_item_id", "sequence_length"):
        assert whole.meta[key] == chunks.meta[key], key
    assert chunks.meta["target_fingerprint"] == target_fingerprint(
        whole.user_ids, whole.offsets, whole.item_ids
    )


def test_store_writer_failure_leaves_nothing(data_dir):
    with pytest.raises(RuntimeError), open_store_writer(data_dir / "half", 10) as writer:
        writer.append(np.array([1]), np.array([2]), np.array([3, 4]), np.zeros(2), np.array([1, 2]))
        raise RuntimeError("interrupted")
    assert not data_dir.exists() or sorted(p.name for p in data_dir.iterdir()) == []


def test_read_equals_the_slices_of_the_maps_and_checks_bounds(data_dir):
    """``SequenceStore.read`` (positional reads, what the loaders use) returns fresh arrays equal
    to slicing the memory maps, for every per-interaction array, empty and whole ranges too; it
    also works in a forked child (the descriptor is shared) and after pickling (re-opened)."""
    import multiprocessing
    import pickle

    store = small_store(data_dir)
    for name in SequenceStore.READABLE:
        mapped = getattr(store, name)
        for start, stop in ((0, 9), (2, 5), (8, 9), (4, 4)):
            got = store.read(name, start, stop)
            assert got.dtype == mapped.dtype and got.tolist() == mapped[start:stop].tolist()
            assert got.flags.writeable  # a copy, not a view of the read-only map
    with pytest.raises(IndexError, match="item_ids.npy: slice 3:10 outside 0:9"):
        store.read("item_ids", 3, 10)
    assert pickle.loads(pickle.dumps(store)).read("timestamps", 6, 9).tolist() == [100, 200, 50]
    store.read("item_ids", 0, 1)  # the descriptor is open before the fork
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_read_in_child, args=(store, sender))  # not pickled: forked
    child.start()
    assert receiver.recv() == [7, 8]
    child.join()
    assert child.exitcode == 0


def test_read_without_positional_reads_slices_the_maps(data_dir, monkeypatch):
    """Where ``os.preadv`` is missing (Windows), ``read`` / ``read_into`` copy map slices."""
    small_store(data_dir)
    monkeypatch.delattr(os, "preadv")
    store = SequenceStore.open(data_dir, "toy")
    assert store.read("timestamps", 5, 8).tolist() == [6, 100, 200]
    out = np.zeros(3, dtype=np.float32)
    assert store.read_into("ratings", 0, out).tolist() == [0.5, 1.0, 1.5]


def _read_in_child(store: SequenceStore, sender) -> None:  # noqa: ANN001
    sender.send(store.read("item_ids", 6, 8).tolist())

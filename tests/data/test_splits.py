"""Stable per-user time order and the target fingerprint."""

from __future__ import annotations

import hashlib

import numpy as np

from generative_recommenders.data.splits import group_by_user, target_fingerprint
from tests.data.conftest import build, write_ml_1m


def test_stable_order_keeps_file_order_on_ties():
    users = np.array([2, 1, 2, 2, 1, 2])
    times = np.array([5, 9, 1, 5, 3, 5])
    g = group_by_user(users, times)
    assert g.user_keys.tolist() == [1, 2]
    assert g.offsets.tolist() == [0, 2, 6]
    # user 1: rows 4 (t=3), 1 (t=9); user 2: row 2 (t=1), then the t=5 tie in file order 0, 3, 5.
    assert g.order.tolist() == [4, 1, 2, 0, 3, 5]


def test_float_timestamps_take_the_same_stable_order():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 50, 2000)
    times = rng.integers(0, 20, 2000)  # many ties
    int_order = group_by_user(users, times).order
    float_order = group_by_user(users, times.astype(np.float64)).order
    assert np.array_equal(int_order, float_order)
    assert np.array_equal(int_order, np.lexsort((times, users)))


def test_fingerprint_definition():
    user_ids = np.array([3, 8])
    offsets = np.array([0, 3, 4])
    items = np.array([11, 12, 13, 14])
    expected = hashlib.sha256(np.array([[3, 12, 13], [8, 0, 14]], dtype="<i8").tobytes())
    assert target_fingerprint(user_ids, offsets, items) == expected.hexdigest()
    changed = target_fingerprint(user_ids, offsets, np.array([11, 13, 12, 14]))
    assert changed != expected.hexdigest()


def test_fingerprint_in_meta_is_reproducible(tmp_path, raw_dir):
    archive = write_ml_1m(raw_dir)
    a = build("ml-1m", tmp_path / "a", archive)
    b = build("ml-1m", tmp_path / "b", archive)
    assert a.meta["target_fingerprint"] == b.meta["target_fingerprint"]
    assert a.meta["target_fingerprint"] == target_fingerprint(a.user_ids, a.offsets, a.item_ids)

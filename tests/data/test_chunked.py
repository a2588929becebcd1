"""Building a store in chunks (files larger than memory) gives the in-memory build's store."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pandas as pd
import pytest

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources.base import SourceOptions
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError
from tests.data.conftest import leftovers

ARRAYS = ("offsets", "user_ids", "item_ids", "ratings", "timestamps")


def _events(seed: int, string_users: bool, fractional: bool, rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    users = rng.integers(1, 40, size=rows)
    items = rng.integers(1, 60, size=rows) * 7
    # Few distinct times: many ties, which must keep file order.
    times = rng.integers(0, 15, size=rows).astype(np.float64)
    if fractional:
        times += rng.choice([0.0, 0.25, 0.75], size=rows)
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in users] if string_users else users,
            "item_id": [f"i-{i}" for i in items] if seed % 2 else items,
            "timestamp": times if fractional else times.astype(np.int64),
            "rating": rng.integers(1, 6, size=rows),
        }
    )
    return frame


def _both(tmp_path: pathlib.Path, path: pathlib.Path, **kw):
    base = SourceOptions(data_dir=tmp_path / "mem", input_file=path, name="s", **kw)
    preprocess("csv", base)
    summary = preprocess(
        "csv", dataclasses.replace(base, data_dir=tmp_path / "chunked", chunk_rows=7)
    )
    return (
        SequenceStore.open(tmp_path / "mem", "s"),
        SequenceStore.open(tmp_path / "chunked", "s"),
        summary,
    )


@pytest.mark.parametrize(
    "seed, string_users, fractional, min_user, min_item",
    [
        (0, False, False, 2, 1),
        (1, True, True, 3, 2),
        (2, True, False, 1, 3),
        (3, False, True, 5, 4),
    ],
)
def test_chunked_build_equals_the_in_memory_build(
    tmp_path, seed, string_users, fractional, min_user, min_item
):
    path = tmp_path / "events.csv"
    _events(seed, string_users, fractional).to_csv(path, index=False)
    mem, chunked, summary = _both(
        tmp_path, path, min_user_interactions=min_user, min_item_interactions=min_item
    )
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(mem, name), getattr(chunked, name), err_msg=name)
    np.testing.assert_array_equal(mem.item_counts(), chunked.item_counts())
    skip = {"created_at"}
    assert {k: v for k, v in mem.meta.items() if k not in skip} == {
        k: v for k, v in chunked.meta.items() if k not in skip
    }
    pd.testing.assert_frame_equal(mem.item_id_mapping(), chunked.item_id_mapping())
    if string_users:
        pd.testing.assert_frame_equal(mem.user_id_mapping(), chunked.user_id_mapping())
    assert summary.num_interactions == mem.num_interactions
    assert leftovers(tmp_path / "chunked") == ["s"]  # partition files removed


def test_chunked_parquet_and_missing_ratings(tmp_path):
    frame = _events(4, True, False).drop(columns=["rating"])
    path = tmp_path / "events.parquet"
    frame.to_parquet(path)
    mem, chunked, _ = _both(tmp_path, path)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(mem, name), getattr(chunked, name), err_msg=name)
    assert not chunked.has_ratings and float(np.abs(chunked.ratings).sum()) == 0.0


def test_chunked_bad_value_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    lines = ["user_id,item_id,timestamp"] + [f"{u},{u},{u}" for u in range(1, 20)]
    lines[15] = "15,15,soon"
    path.write_text("\n".join(lines) + "\n")
    opts = SourceOptions(data_dir=tmp_path / "d", input_file=path, chunk_rows=4)
    with pytest.raises(UserInputError) as e:
        preprocess("csv", opts)
    assert str(e.value) == (f"{path}: line 16, column 'timestamp': got 'soon', expected a number")
    assert leftovers(tmp_path / "d") == []

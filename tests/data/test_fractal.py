"""Fractal expansion: a hand-computed tiny case, sampling rates, determinism, time order, and
every kind of bad input (one line, exit 2, nothing written)."""

from __future__ import annotations

import dataclasses
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from generative_recommenders.data.fractal import (
    FractalSettings,
    kept_blocks,
    plan_expansion,
    reduced_matrix,
    resize_rows,
    truncated_svd,
)
from generative_recommenders.data.fractal_store import expand_store
from generative_recommenders.data.store import SequenceStore, write_store
from generative_recommenders.errors import UserInputError
from tests.data.conftest import leftovers

REPO = pathlib.Path(__file__).resolve().parents[2]


def _hand_store(data_dir: pathlib.Path) -> SequenceStore:
    """4 users x 2 items, max rating 4, so R̂ (rating / 4) is
    u1 [1, 1], u2 [1, 1], u3 [1, .5], u4 [.5, -] (u4 never saw item 2): 7 interactions."""
    write_store(
        data_dir / "hand",
        user_ids=np.array([1, 2, 3, 4]),
        offsets=np.array([0, 2, 4, 6, 7]),
        item_ids=np.array([10, 20, 20, 10, 10, 20, 10]),
        ratings=np.array([4, 4, 4, 4, 4, 2, 2], dtype=np.float32),
        timestamps=np.array([5, 6, 3, 3, 1, 9, 2]),
        meta={"dataset": "hand", "has_ratings": True},
    )
    return SequenceStore.open(data_dir, "hand")


def _random_store(data_dir: pathlib.Path, name: str = "rand", users: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=users)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    # Each user's times sorted, with ties, as a store keeps them.
    times = np.concatenate([np.sort(rng.integers(0, 50, size=n)) for n in lengths])
    write_store(
        data_dir / name,
        user_ids=np.arange(1, users + 1) * 3,
        offsets=offsets,
        item_ids=rng.integers(1, 80, size=total),
        ratings=rng.integers(1, 6, size=total).astype(np.float32),
        timestamps=times,
        meta={"dataset": name, "has_ratings": True},
    )
    return SequenceStore.open(data_dir, name)


def _arrays(store: SequenceStore) -> dict[str, np.ndarray]:
    return {
        name: np.array(getattr(store, name))
        for name in ("offsets", "user_ids", "item_ids", "ratings", "timestamps")
    }


def _block_of(store: SequenceStore, num_users: int, num_items: int):
    """(row block i, column block j) of every interaction of an expanded store."""
    users = np.repeat(np.array(store.user_ids), store.lengths())
    return (users - 1) // num_users, (np.array(store.item_ids) - 1) // num_items


def test_reduced_matrix_is_the_block_means_when_k_covers_the_rank(tmp_path):
    store = _hand_store(tmp_path)
    plan = plan_expansion(store, FractalSettings(2, 2))
    # X = block means of R̂: [[1, 1], [(1 + .5) / 2, (.5 + 0) / 2]] = [[1, 1], [.75, .25]];
    # P = (X - .25) / .75.
    np.testing.assert_allclose(plan.probabilities, [[1, 1], [2 / 3, 0]], atol=1e-9)
    # Both singular values: their squares sum to ||R̂||_F^2 = 5 * 1 + 2 * 0.25.
    assert float(np.sum(plan.singular_values**2)) == pytest.approx(5.5, rel=1e-9)


def test_hand_computed_expansion(tmp_path):
    store = _hand_store(tmp_path)
    summary = expand_store("hand", "hand-x2x2", FractalSettings(2, 2, seed=3), tmp_path)
    out = SequenceStore.open(tmp_path, "hand-x2x2")
    assert summary.num_interactions == out.num_interactions
    # 2 x 4 users, 2 x 2 items; ids 1..8 and 1..4.
    assert out.user_ids.min() >= 1 and out.user_ids.max() <= 8
    assert out.item_ids.min() >= 1 and out.max_item_id <= 4
    i, j = _block_of(out, num_users=4, num_items=2)
    counts = np.zeros((2, 2), dtype=int)
    np.add.at(counts, (i, j), 1)
    # Blocks with P = 1 hold every source interaction, P = 0 none, P = 2/3 some.
    assert counts[0, 0] == 7 and counts[0, 1] == 7 and counts[1, 1] == 0
    assert 0 <= counts[1, 0] <= 7
    # A P = 1 block is a copy of the source: the same (rating, time) multiset, and each
    # item's degree is a source item's degree.
    block = (i == 0) & (j == 0)
    got = sorted(zip(out.ratings[block].tolist(), out.timestamps[block].tolist(), strict=True))
    want = sorted(zip(store.ratings.tolist(), store.timestamps.tolist(), strict=True))
    assert got == want
    assert sorted(np.bincount(out.item_ids[block])[1:3].tolist()) == [3, 4]
    assert (tmp_path / "hand-x2x2" / "fractal.png").stat().st_size > 1000
    assert summary.expected_interactions == pytest.approx(7 * (1 + 1 + 2 / 3 + 0))


def test_one_by_one_is_the_source_relabelled(tmp_path):
    store = _random_store(tmp_path)
    expand_store("rand", "rand-x1", FractalSettings(1, 1, seed=5), tmp_path)
    out = SequenceStore.open(tmp_path, "rand-x1")
    assert out.num_interactions == store.num_interactions
    assert out.num_users == store.num_users and out.meta["num_items"] == store.meta["num_items"]
    assert sorted(out.lengths().tolist()) == sorted(store.lengths().tolist())
    assert sorted(out.item_counts()[1:].tolist()) == sorted(
        store.item_counts()[store.catalogue_item_ids()].tolist()
    )


def test_element_sample_rate_thins_each_interaction(tmp_path):
    store = _random_store(tmp_path, users=300)
    total = store.num_interactions
    expand_store("rand", "half", FractalSettings(1, 1, element_sample_rate=0.5), tmp_path)
    got = SequenceStore.open(tmp_path, "half").num_interactions
    # Binomial(total, 0.5): 6 standard deviations either side.
    assert abs(got - total / 2) < 6 * (total * 0.25) ** 0.5, (got, total)


def test_block_sample_rate_drops_whole_blocks(tmp_path):
    store = _random_store(tmp_path)
    settings = FractalSettings(4, 4, block_sample_rate=0.5, seed=11)
    plan = plan_expansion(store, settings)
    expand_store("rand", "blocks", settings, tmp_path)
    out = SequenceStore.open(tmp_path, "blocks")
    kept = kept_blocks(settings)
    assert 0 < kept.sum() < 16
    i, j = _block_of(out, num_users=store.num_users, num_items=int(store.meta["num_items"]))
    occupied = np.zeros((4, 4), dtype=bool)
    occupied[i, j] = True
    assert not (occupied & ~kept).any()  # nothing in a dropped block
    full = kept & (plan.probabilities == 1.0)
    assert (occupied[full]).all()


def test_same_seed_same_store_other_seed_other_store_and_chunking_does_not_matter(tmp_path):
    _random_store(tmp_path)
    base = FractalSettings(3, 2, element_sample_rate=0.7, seed=1)
    expand_store("rand", "a", base, tmp_path)
    expand_store("rand", "b", dataclasses.replace(base, chunk_interactions=5), tmp_path)
    expand_store("rand", "c", dataclasses.replace(base, seed=2), tmp_path)
    a, b, c = (_arrays(SequenceStore.open(tmp_path, name)) for name in "abc")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert a["item_ids"].shape != c["item_ids"].shape or not np.array_equal(
        a["item_ids"], c["item_ids"]
    )
    assert (
        SequenceStore.open(tmp_path, "a").meta["target_fingerprint"]
        == SequenceStore.open(tmp_path, "b").meta["target_fingerprint"]
    )


def test_every_user_is_in_time_order_and_keeps_source_events(tmp_path):
    store = _random_store(tmp_path)
    expand_store("rand", "big", FractalSettings(3, 4, seed=4, chunk_interactions=50), tmp_path)
    out = SequenceStore.open(tmp_path, "big")
    ts, offsets = np.array(out.timestamps), np.array(out.offsets)
    same_user = np.repeat(np.arange(out.num_users), out.lengths())
    steps = np.diff(ts)
    assert (steps[same_user[1:] == same_user[:-1]] >= 0).all()
    assert np.all(np.diff(out.user_ids) > 0)  # users in order of their new id, none twice
    assert offsets.dtype == np.int64 and (out.lengths() >= 1).all()
    # Every (rating, time) pair exists in the source.
    source_pairs = set(zip(store.ratings.tolist(), store.timestamps.tolist(), strict=True))
    assert set(zip(out.ratings.tolist(), ts.tolist(), strict=True)) <= source_pairs


def test_truncated_svd_matches_numpy_on_a_dense_matrix():
    import torch

    rng = np.random.default_rng(0)
    dense = rng.random((40, 25)) * (rng.random((40, 25)) < 0.3)
    _, s, _ = truncated_svd(torch.from_numpy(dense), 5, seed=0)
    np.testing.assert_allclose(s, np.linalg.svd(dense, compute_uv=False)[:5], rtol=1e-6)


def test_resize_rows_averages_groups_and_repeats_when_growing():
    a = np.arange(6, dtype=np.float64)[:, None]
    np.testing.assert_allclose(resize_rows(a, 2)[:, 0], [1, 4])
    np.testing.assert_allclose(resize_rows(a[:2], 4)[:, 0], [0, 0, 1, 1])


def test_constant_matrix_keeps_every_block():
    np.testing.assert_array_equal(
        reduced_matrix(np.ones((3, 1)), np.ones(1), np.ones((2, 1)), 2, 3), np.ones((2, 3))
    )


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, fragment",
    [
        (FractalSettings(0, 2), "--num_row_multiplier=0: expected an integer >= 1"),
        (FractalSettings(2, -1), "--num_col_multiplier=-1: expected an integer >= 1"),
        (FractalSettings(2, 2, element_sample_rate=0.0), "--element_sample_rate=0.0"),
        (FractalSettings(2, 2, block_sample_rate=1.5), "--block_sample_rate=1.5"),
    ],
)
def test_bad_settings_are_one_line_and_write_nothing(tmp_path, settings, fragment):
    data_dir = tmp_path / "data"
    _random_store(data_dir)
    with pytest.raises(UserInputError) as e:
        expand_store("rand", "out", settings, data_dir)
    assert fragment in str(e.value) and "\n" not in str(e.value)
    assert leftovers(data_dir) == ["rand"]


@pytest.mark.parametrize("name", ["rand", "../escape", ""])
def test_bad_store_name_is_one_line(tmp_path, name):
    data_dir = tmp_path / "data"
    _random_store(data_dir)
    with pytest.raises(UserInputError) as e:
        expand_store("rand", name, FractalSettings(2, 2), data_dir)
    assert "--name=" in str(e.value)
    assert leftovers(data_dir) == ["rand"] and leftovers(tmp_path) == ["data"]


def test_not_enough_disk_is_caught_before_writing(tmp_path):
    data_dir = tmp_path / "data"
    _random_store(data_dir, users=2000)
    # ~40k interactions x 4e6 blocks x 20 bytes: petabytes.
    with pytest.raises(UserInputError) as e:
        expand_store("rand", "huge", FractalSettings(2000, 2000), data_dir)
    assert "GB are free" in str(e.value) and "--data_dir" in str(e.value)
    assert leftovers(data_dir) == ["rand"]


def _cli(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "preprocess_public_data.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--dataset=fractal", "--source=nope"], "--source=nope: no sequence store at"),
        (["--dataset=ml-3b"], "--dataset=ml-3b expands the ml-20m store: no sequence store"),
        (
            ["--dataset=fractal", "--source=rand", "--element_sample_rate=2"],
            "--element_sample_rate=2.0: expected a rate in (0, 1]",
        ),
        (
            ["--dataset=ml-100k", "--num_row_multiplier=4", "--chunk_rows=9"],
            "--num_row_multiplier, --chunk_rows do not apply to --dataset=ml-100k",
        ),
        (["--dataset=ml-3b", "--source=rand"], "--source do not apply to --dataset=ml-3b"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, fragment):
    data_dir = tmp_path / "data"
    _random_store(data_dir)
    proc = _cli(*args, f"--data_dir={data_dir}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert leftovers(data_dir) == ["rand"]


def test_cli_expands_and_prints_the_statistics(tmp_path):
    data_dir = tmp_path / "data"
    _random_store(data_dir)
    args = ["--dataset=fractal", "--source=rand", "--num_row_multiplier=2"]
    proc = _cli(*args, "--num_col_multiplier=3", f"--data_dir={data_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "interactions/s written" in proc.stdout and "rand-x2x3/" in proc.stdout
    meta = SequenceStore.open(data_dir, "rand-x2x3").meta
    assert meta["fractal"]["num_row_multiplier"] == 2 and meta["fractal"]["seed"] == 0

"""Loaders: deterministic training order, exact evaluation partitions, worker clamping."""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import time

import numpy as np
import pytest

from generative_recommenders.data.dataset import SequenceDataset
from generative_recommenders.data.loader import (
    ShardSampler,
    available_cpus,
    create_data_loader,
    set_loader_epoch,
)
from generative_recommenders.data.store import SequenceStore, write_store


def _store(data_dir, num_users: int = 7) -> SequenceStore:
    lengths = np.arange(num_users) % 4 + 3
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    total = int(offsets[-1])
    write_store(
        data_dir / "u",
        user_ids=np.arange(100, 100 + num_users),
        offsets=offsets,
        item_ids=np.arange(1, total + 1),
        ratings=np.ones(total),
        timestamps=np.arange(total),
        meta={},
    )
    return SequenceStore.open(data_dir, "u")


def _rows(loader) -> list[int]:
    return [r for batch in loader for r in batch.rows.tolist()]


def test_training_order_depends_only_on_seed_and_epoch(data_dir):
    ds = SequenceDataset(_store(data_dir, 40), 5, 1)
    kw = dict(batch_size=4, world_size=1, rank=0, shuffle=True, num_workers=0)
    a = create_data_loader(ds, random_seed=7, **kw)
    b = create_data_loader(ds, random_seed=7, **kw)
    first = _rows(a)
    assert first == _rows(b)
    assert sorted(first) == list(range(40))
    assert first != list(range(40))
    set_loader_epoch(a, 1)
    epoch1 = _rows(a)
    assert epoch1 != first and sorted(epoch1) == list(range(40))
    set_loader_epoch(b, 1)
    assert _rows(b) == epoch1
    assert _rows(create_data_loader(ds, random_seed=8, **kw)) != first


@pytest.mark.parametrize("num_workers", [0, 1])
def test_mid_epoch_start_yields_exactly_the_rest_of_each_ranks_epoch(data_dir, num_workers):
    ds = SequenceDataset(_store(data_dir, 21), 5, 1, positional_sampling_ratio=0.5, seed=3)
    for rank in range(2):
        kw = dict(batch_size=3, world_size=2, rank=rank, shuffle=True, random_seed=7)
        loader = create_data_loader(ds, num_workers=num_workers, prefetch_factor=2, **kw)
        set_loader_epoch(loader, 2)
        full = [batch.ids.tolist() for batch in loader]
        assert len(full) == 4  # 11 rows of this rank (21 padded to 22), in batches of 3
        set_loader_epoch(loader, 2, start_batch=3)
        assert len(loader) == 1 and [batch.ids.tolist() for batch in loader] == full[3:]
        set_loader_epoch(loader, 2)  # the start applies to that epoch only
        assert [batch.ids.tolist() for batch in loader] == full


def _children() -> set[int]:
    tasks = pathlib.Path("/proc/self/task").glob("*/children")
    return {int(pid) for task in tasks for pid in task.read_text().split()}


@pytest.mark.skipif(not pathlib.Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_loader_workers_survive_a_preemption_signal(data_dir):
    # A scheduler may signal every process of a job; the training process decides when to stop.
    ds = SequenceDataset(_store(data_dir, 12), 5, 1)
    before = _children()
    loader = create_data_loader(
        ds, batch_size=4, world_size=1, rank=0, shuffle=True, num_workers=1, prefetch_factor=2
    )
    first = _rows(loader)
    workers = _children() - before
    assert len(workers) == 1
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)  # an unprotected worker would be dead by now
    assert _rows(loader) == first  # same epoch, same order, from the same (persistent) worker
    assert _children() - before == workers


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_partition_has_no_duplicates_or_padding(data_dir, world_size):
    ds = SequenceDataset(_store(data_dir, 7), 5, 0)
    seen = []
    for rank in range(world_size):
        loader = create_data_loader(
            ds, batch_size=2, world_size=world_size, rank=rank, shuffle=False, num_workers=0
        )
        rows = _rows(loader)
        assert rows == list(range(rank, 7, world_size))
        seen += rows
    assert sorted(seen) == list(range(7))


def test_shard_sampler_lengths():
    assert [len(ShardSampler(7, 3, r)) for r in range(3)] == [3, 2, 2]


def test_workers_clamped_and_logged(data_dir, caplog):
    ds = SequenceDataset(_store(data_dir), 5, 0)
    caplog.set_level(logging.INFO, logger="generative_recommenders.data.loader")
    loader = create_data_loader(
        ds, batch_size=4096, world_size=1, rank=0, shuffle=False, num_workers=available_cpus() + 5,
        prefetch_factor=10**6,
    )  # fmt: skip
    assert loader.num_workers == available_cpus()
    assert "clamped" in caplog.text and "capped" in caplog.text
    assert loader.prefetch_factor < 10**6
    no_workers = create_data_loader(
        ds, batch_size=2, world_size=1, rank=0, shuffle=False, num_workers=0
    )
    assert no_workers.num_workers == 0 and no_workers.prefetch_factor is None


def test_epoch_reaches_persistent_workers(data_dir):
    store = _store(data_dir, 6)
    ds = SequenceDataset(store, 5, 1, positional_sampling_ratio=0.5, seed=1)
    loader = create_data_loader(
        ds, batch_size=6, world_size=1, rank=0, shuffle=False, num_workers=1, prefetch_factor=2
    )
    for epoch in (0, 1):
        set_loader_epoch(loader, epoch)
        (batch,) = list(loader)
        expected = [ds[i]["ids"].tolist() for i in range(len(ds))]
        assert batch.ids.tolist() == expected


def test_gin_bindings_reach_create_data_loader(data_dir):
    gin = pytest.importorskip("gin")
    from generative_recommenders.config.data import create_data_loader as configurable

    ds = SequenceDataset(_store(data_dir), 5, 0)
    gin.clear_config()
    try:
        gin.parse_config("create_data_loader.num_workers = 0\ncreate_data_loader.random_seed = 3")
        loader = configurable(ds, batch_size=2, world_size=1, rank=0, shuffle=True)
        assert loader.num_workers == 0
        assert loader.sampler.seed == 3
    finally:
        gin.clear_config()

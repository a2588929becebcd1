"""Data loaders: deterministic shuffled shards for training, exact partitions for evaluation."""

from __future__ import annotations

import itertools
import logging
import os
import signal
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from generative_recommenders.data.dataset import collate_sequences
from generative_recommenders.errors import UserInputError

logger = logging.getLogger(__name__)

# Upper bound on the bytes of batches queued by all workers together.
PREFETCH_BUDGET_BYTES = 1 << 30
# Bytes per history position in a batch: id (8) + timestamp (8) + rating (4).
_BYTES_PER_POSITION = 20


class ShardSampler(Sampler[int]):
    """Rank r of w gets indices r, r + w, r + 2w, ...: no padding, no duplicates.

    Together the ranks cover every index exactly once, so a sum + count all-reduce counts each
    user once (unlike DistributedSampler, which pads by repeating indices).
    """

    def __init__(self, num_items: int, world_size: int, rank: int):
        self.num_items = int(num_items)
        self.world_size = int(world_size)
        self.rank = int(rank)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_items, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_items, self.world_size))


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can begin an epoch after its first ``start`` indices.

    The order is still a function of (seed, epoch) alone; a run resumed mid-epoch sets the start
    to the samples this rank already consumed, so it sees exactly the rest of the epoch without
    loading (or drawing randomness for) the skipped batches. ``set_epoch`` resets the start.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.start, None)

    def __len__(self) -> int:
        return max(super().__len__() - self.start, 0)


def _ignore_preemption_signals(worker_id: int) -> None:
    """Data-loader workers leave SIGTERM / SIGUSR1 to the training process, which stops them.

    A scheduler may signal every process of the job; a worker killed by it would end the
    training process's loader with an error before the preemption checkpoint is written."""
    for name in ("SIGTERM", "SIGUSR1"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def available_cpus() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def create_data_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    world_size: int,
    rank: int,
    shuffle: bool,
    prefetch_factor: int = 128,
    num_workers: int = os.cpu_count(),
    drop_last: bool = False,
    random_seed: int = 0,
) -> DataLoader:
    """A DataLoader of SequenceBatch for ``rank`` of ``world_size``.

    shuffle=True (training): a :class:`ResumableSampler` (DistributedSampler, shuffle=True,
    seed=random_seed) for every world size, so the order depends only on (seed, epoch); call
    ``set_loader_epoch`` each epoch.
    shuffle=False (evaluation): ShardSampler, an exact partition of the users over the ranks.
    ``num_workers`` is clamped to the available cores, and ``prefetch_factor`` so that all
    queued batches stay under PREFETCH_BUDGET_BYTES; both are logged when changed.
    """
    if batch_size < 1:
        raise UserInputError(f"create_data_loader.batch_size={batch_size}: expected >= 1")
    if world_size < 1 or not 0 <= rank < world_size:
        raise UserInputError(
            f"create_data_loader: rank={rank}, world_size={world_size}: expected 0 <= rank < "
            "world_size"
        )
    if num_workers is None or num_workers < 0:
        raise UserInputError(f"create_data_loader.num_workers={num_workers}: expected >= 0")
    if prefetch_factor is None or prefetch_factor < 1:
        raise UserInputError(f"create_data_loader.prefetch_factor={prefetch_factor}: expected >= 1")
    cores = available_cpus()
    if num_workers > cores:
        logger.info(
            "create_data_loader: num_workers=%d clamped to %d (cores available)", num_workers, cores
        )
        num_workers = cores
    if shuffle:
        sampler: Sampler[int] = ResumableSampler(
            dataset,
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=random_seed,
            drop_last=drop_last,
        )
    else:
        sampler = ShardSampler(len(dataset), world_size, rank)
    kwargs = {}
    if num_workers > 0:
        seq_len = int(getattr(dataset, "max_sequence_length", 200))
        batch_bytes = batch_size * (seq_len * _BYTES_PER_POSITION + 64)
        cap = max(2, PREFETCH_BUDGET_BYTES // (num_workers * batch_bytes))
        if prefetch_factor > cap:
            logger.info(
                "create_data_loader: prefetch_factor=%d capped to %d (%d workers x %d batches "
                "of %d x %d positions stay under %d MiB)",
                prefetch_factor, cap, num_workers, cap, batch_size, seq_len,
                PREFETCH_BUDGET_BYTES >> 20,
            )  # fmt: skip
            prefetch_factor = cap
        kwargs = {"prefetch_factor": prefetch_factor, "persistent_workers": True}
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_sequences,
        drop_last=drop_last and shuffle,
        worker_init_fn=_ignore_preemption_signals if num_workers > 0 else None,
        # Workers' seeds come from this generator, not from torch's global one, so the number of
        # workers does not change the dropout masks and negatives a seeded run draws.
        generator=torch.Generator().manual_seed(random_seed),
        **kwargs,
    )


def set_loader_epoch(loader: DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Set the epoch of the loader's sampler (shuffle order) and dataset (positional sampling).

    ``start_batch`` > 0 (a mid-epoch resume) skips that many batches of this rank at the sampler.
    The loader's own generator (it only seeds the workers) is reseeded from (seed, epoch), so no
    loader state carries over from one epoch to the next either.
    """
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if start_batch:
        if not isinstance(sampler, ResumableSampler):
            raise ValueError("set_loader_epoch: start_batch needs a ResumableSampler")
        sampler.set_start(start_batch * loader.batch_size)
    if loader.generator is not None and hasattr(sampler, "seed"):
        loader.generator.manual_seed((int(sampler.seed) * 1_000_003 + epoch) % (2**63))
    dataset = loader.dataset
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)

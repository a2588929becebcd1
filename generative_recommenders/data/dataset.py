"""Fixed-length history windows over a sequence store, and their collation into a batch.

For each user with at least ``ignore_last_n + 2`` events, the target is the event at position
``len - 1 - ignore_last_n`` (0: the last event, for test; 1: the second-to-last, for training;
2: for a validation split). The window is the most recent ``max_sequence_length`` events before
the target, oldest first, zero-padded on the right.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError

SequenceItem = dict[str, Any]


class SequenceDataset(torch.utils.data.Dataset):
    """One window per eligible user of ``store``.

    Items are dicts of numpy values: ``ids`` [N] int64, ``ratings`` [N] float32, ``timestamps``
    [N] int64 (0 after ``length``), ``length``, ``target_id``, ``target_rating``,
    ``target_timestamp``, ``row`` (the store row) and ``user_id``; N = max_sequence_length.
    """

    def __init__(
        self,
        store: SequenceStore,
        max_sequence_length: int,
        ignore_last_n: int,
        positional_sampling_ratio: float = 1.0,
        seed: int = 0,
    ):
        if max_sequence_length < 1:
            raise UserInputError(
                f"max_sequence_length={max_sequence_length}: expected a positive integer"
            )
        if ignore_last_n < 0:
            raise UserInputError(f"ignore_last_n={ignore_last_n}: expected 0, 1, 2, ...")
        if not 0.0 < positional_sampling_ratio <= 1.0:
            raise UserInputError(
                f"positional_sampling_ratio={positional_sampling_ratio}: expected a value in (0, 1]"
            )
        self.store = store
        self.max_sequence_length = int(max_sequence_length)
        self.ignore_last_n = int(ignore_last_n)
        self.positional_sampling_ratio = float(positional_sampling_ratio)
        self.seed = int(seed)
        offsets = np.array(store.offsets, dtype=np.int64)
        lengths = np.diff(offsets)
        self.rows = np.flatnonzero(lengths >= self.ignore_last_n + 2).astype(np.int64)
        self._row_offsets = offsets
        self._starts = offsets[self.rows]
        self._targets = offsets[self.rows + 1] - 1 - self.ignore_last_n
        self._item_ids = store.item_ids
        self._ratings = store.ratings
        self._timestamps = store.timestamps
        self._user_ids = np.asarray(store.user_ids)[self.rows]
        # Shared memory, so set_epoch reaches persistent data-loader workers.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    _STORE_VIEWS = ("_item_ids", "_ratings", "_timestamps")

    def __getstate__(self) -> dict[str, Any]:
        # The store pickles by path; its memory-mapped arrays are re-attached in __setstate__.
        return {k: v for k, v in self.__dict__.items() if k not in self._STORE_VIEWS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._item_ids = self.store.item_ids
        self._ratings = self.store.ratings
        self._timestamps = self.store.timestamps

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Positional sampling is seeded by (seed, epoch, store row)."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def __getitem__(self, index: int) -> SequenceItem:
        n = self.max_sequence_length
        start = int(self._starts[index])
        target = int(self._targets[index])
        ids = np.zeros(n, dtype=np.int64)
        ratings = np.zeros(n, dtype=np.float32)
        timestamps = np.zeros(n, dtype=np.int64)
        if self.positional_sampling_ratio < 1.0:
            positions = self._sampled_positions(index, start, target)[-n:]
            length = positions.shape[0]
            ids[:length] = self._item_ids[positions]
            ratings[:length] = self._ratings[positions]
            timestamps[:length] = self._timestamps[positions]
        else:
            lo = max(start, target - n)
            length = target - lo
            ids[:length] = self._item_ids[lo:target]
            ratings[:length] = self._ratings[lo:target]
            timestamps[:length] = self._timestamps[lo:target]
        return {
            "ids": ids,
            "ratings": ratings,
            "timestamps": timestamps,
            "length": length,
            "target_id": self._item_ids[target],
            "target_rating": self._ratings[target],
            "target_timestamp": self._timestamps[target],
            "row": self.rows[index],
            "user_id": self._user_ids[index],
        }

    def _sampled_positions(self, index: int, start: int, target: int) -> np.ndarray:
        """Each history position kept with probability ratio (the last one if none is)."""
        row = int(self.rows[index])
        rng = np.random.default_rng([self.seed, self.epoch, row])
        keep = rng.random(target - start) < self.positional_sampling_ratio
        if not keep.any():
            keep[-1] = True
        return start + np.flatnonzero(keep)

    def seen_items(self, rows: torch.Tensor) -> torch.Tensor:
        """[B, H] int64, zero-padded: every item of each store row strictly before its target.

        The whole known history, not just the window (for filtering seen items in
        evaluation). H is the longest such history in the batch (at least 1).
        """
        r = rows.detach().cpu().numpy().astype(np.int64)
        starts = self._row_offsets[r]
        counts = np.maximum(self._row_offsets[r + 1] - 1 - self.ignore_last_n - starts, 0)
        width = max(int(counts.max()) if counts.size else 0, 1)
        cols = np.arange(width, dtype=np.int64)
        valid = cols[None, :] < counts[:, None]
        index = np.where(valid, starts[:, None] + cols[None, :], 0)
        seen = np.where(valid, self._item_ids[index], 0)
        return torch.from_numpy(np.ascontiguousarray(seen, dtype=np.int64))


def collate_sequences(items: list[SequenceItem]) -> SequenceBatch:
    """Stack dataset items into a SequenceBatch (ids int64, ratings float32, timestamps int64)."""

    def scalars(key: str, dtype) -> torch.Tensor:
        return torch.from_numpy(np.fromiter((it[key] for it in items), dtype, len(items)))

    return SequenceBatch(
        rows=scalars("row", np.int64),
        user_ids=scalars("user_id", np.int64),
        ids=torch.from_numpy(np.stack([it["ids"] for it in items])),
        lengths=scalars("length", np.int64),
        timestamps=torch.from_numpy(np.stack([it["timestamps"] for it in items])),
        ratings=torch.from_numpy(np.stack([it["ratings"] for it in items])),
        target_ids=scalars("target_id", np.int64),
        target_timestamps=scalars("target_timestamp", np.int64),
        target_ratings=scalars("target_rating", np.float32),
    )

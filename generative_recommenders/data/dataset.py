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
# (store array, the item's window key, its target key, dtype)
_COLUMNS = (
    ("item_ids", "ids", "target_id", np.int64),
    ("ratings", "ratings", "target_rating", np.float32),
    ("timestamps", "timestamps", "target_timestamp", np.int64),
)


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
        self._user_ids = np.asarray(store.user_ids)[self.rows]
        # Shared memory, so set_epoch reaches persistent data-loader workers.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

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
        sampled = None
        if self.positional_sampling_ratio < 1.0:
            sampled = self._sampled_positions(index, start, target)[-n:]
        lo = int(sampled[0]) if sampled is not None else max(start, target - n)
        length = sampled.shape[0] if sampled is not None else target - lo
        item: SequenceItem = {"length": length, "row": self.rows[index]}
        read, read_into = self.store.read, self.store.read_into
        for name, key, target_key, dtype in _COLUMNS:
            # One positional read of events lo..target (the target last) per array.
            if sampled is None:  # straight into the zero-padded window (+1 for the target)
                window = np.zeros(n + 1, dtype=dtype)
                read_into(name, lo, window[: length + 1])
                item[target_key] = window[length]
                window[length] = 0
                item[key] = window[:n]
            else:
                values = read(name, lo, target + 1)
                window = np.zeros(n, dtype=dtype)
                window[:length] = values[sampled - lo]
                item[target_key] = values[-1]
                item[key] = window
        item["user_id"] = self._user_ids[index]
        return item

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
        seen = np.zeros((r.shape[0], width), dtype=np.int64)
        for i, (first, count) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
            seen[i, :count] = self.store.read("item_ids", first, first + count)
        return torch.from_numpy(seen)


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

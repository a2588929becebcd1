"""Per-user state kept between ``recommend_for_histories`` calls, for histories that grow.

A :class:`HistoryCache` remembers each user's known events (codes, times, ratings) and, for HSTU,
the encoder's cached keys/values (``HSTU.init_cache`` / ``encode_incremental``), one user per
entry. A call with ``cache=`` appends the given events to the cached history; HSTU then computes
only the new positions. SASRec, or a history that outgrew the model's window
(``max_sequence_length``: the window slides, so every position moves), is re-encoded in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from generative_recommenders.modeling.encoders.hstu import HSTUCache


@dataclass
class EncodedRow:
    """One user's HSTU cache: timestamps [M] int64, keys/values per block [M, E], last_inputs [D]."""

    length: int
    timestamps: torch.Tensor
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    last_inputs: torch.Tensor


@dataclass
class UserHistory:
    """A user's known events, oldest first (item codes, seconds, ratings), and its HSTU cache."""

    items: list[int] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    ratings: list[float] = field(default_factory=list)
    encoded: EncodedRow | None = None


class HistoryCache:
    """Histories by user key (``str(user_id)``); pass the same object to successive calls."""

    def __init__(self) -> None:
        self.users: dict[str, UserHistory] = {}
        self.incremental_calls = 0  # users encoded incrementally so far (for tests and logs)
        self.full_calls = 0  # users encoded from their whole window

    def __contains__(self, user_id: object) -> bool:
        return str(user_id) in self.users

    def __len__(self) -> int:
        return len(self.users)

    def get(self, user_id: object) -> UserHistory:
        return self.users.setdefault(str(user_id), UserHistory())

    def forget(self, user_id: object) -> None:
        self.users.pop(str(user_id), None)


def stack_rows(rows: list[EncodedRow | None], num_blocks: int, template: HSTUCache) -> HSTUCache:
    """Per-user rows (None = empty) -> one batched HSTUCache, zero-padded to the longest."""
    B = len(rows)
    width = max((r.length for r in rows if r is not None), default=0)
    E_k = template.keys[0].shape[-1]
    E_v = template.values[0].shape[-1]
    D = template.last_inputs.shape[-1]
    device, dtype = template.last_inputs.device, template.last_inputs.dtype
    lengths = torch.zeros(B, dtype=torch.int64, device=device)
    timestamps = torch.zeros(B, width, dtype=torch.int64, device=device)
    keys = [torch.zeros(B, width, E_k, dtype=dtype, device=device) for _ in range(num_blocks)]
    values = [torch.zeros(B, width, E_v, dtype=dtype, device=device) for _ in range(num_blocks)]
    last_inputs = torch.zeros(B, D, dtype=dtype, device=device)
    for b, row in enumerate(rows):
        if row is None or row.length == 0:
            continue
        n = row.length
        lengths[b] = n
        timestamps[b, :n] = row.timestamps[:n]
        for block in range(num_blocks):
            keys[block][b, :n] = row.keys[block][:n]
            values[block][b, :n] = row.values[block][:n]
        last_inputs[b] = row.last_inputs
    return HSTUCache(lengths, timestamps, keys, values, last_inputs)


def split_rows(cache: HSTUCache) -> list[EncodedRow]:
    """A batched HSTUCache -> one EncodedRow per user, trimmed to its length."""
    rows = []
    for b, n in enumerate(cache.lengths.tolist()):
        rows.append(
            EncodedRow(
                length=int(n),
                timestamps=cache.timestamps[b, :n].clone(),
                keys=[k[b, :n].clone() for k in cache.keys],
                values=[v[b, :n].clone() for v in cache.values],
                last_inputs=cache.last_inputs[b].clone(),
            )
        )
    return rows

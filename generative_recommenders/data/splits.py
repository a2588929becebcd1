"""Per-user ordering of raw events and the leave-last-out split points.

Every user's events are ordered by timestamp with a *stable* sort: events with equal timestamps
keep their order in the file. (An unstable sort reorders ties differently between runs and
machines, and with them up to a quarter of the held-out targets.) The target fingerprint hashes
each user's last two items, so two runs can prove that they evaluate on the same targets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class GroupedEvents:
    """Events grouped by user, each user's events in (timestamp, file order) order.

    Attributes:
        user_keys: [U] the distinct user keys (int64 ids or codes), ascending.
        offsets: [U + 1] int64; user u owns positions offsets[u]:offsets[u + 1].
        order: [T] int64 permutation of the input rows giving that order.
    """

    user_keys: np.ndarray
    offsets: np.ndarray
    order: np.ndarray


def group_by_user(users: np.ndarray, timestamps: np.ndarray) -> GroupedEvents:
    """Stable sort by (user, timestamp): ties keep input (file) order.

    Args:
        users: [T] integer user keys. timestamps: [T] numeric event times.
    """
    users = np.asarray(users)
    timestamps = np.asarray(timestamps)
    if users.size == 0:
        return GroupedEvents(np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64))
    order = _stable_user_time_order(users, timestamps)
    sorted_users = users[order]
    starts = np.flatnonzero(np.concatenate(([True], sorted_users[1:] != sorted_users[:-1])))
    offsets = np.concatenate((starts, [users.size])).astype(np.int64)
    return GroupedEvents(sorted_users[starts].astype(np.int64), offsets, order)


def target_positions(offsets: np.ndarray, ignore_last_n: int) -> np.ndarray:
    """[U] int64 position (into the flat arrays) of each user's target.

    The target is the last event after dropping ``ignore_last_n`` events: 0 -> the last item
    (test), 1 -> the second-to-last (validation / training target), and so on.
    """
    return np.asarray(offsets[1:], dtype=np.int64) - 1 - int(ignore_last_n)


FINGERPRINT_DEFINITION = (
    "sha256 of the little-endian int64 [num_users, 3] array of (user id, "
    "second-to-last item or 0, last item), users in store order"
)


def target_fingerprint(user_ids: np.ndarray, offsets: np.ndarray, item_ids: np.ndarray) -> str:
    """sha256 hex digest over every user's (user id, second-to-last item, last item).

    The hashed bytes are the little-endian int64 array [U, 3] of those triples; a user with a
    single event contributes 0 as its second-to-last item. Hashing consecutive groups of users
    one after another (``fingerprint_triples`` per group) gives the same digest.
    """
    return hashlib.sha256(fingerprint_triples(user_ids, offsets, item_ids).tobytes()).hexdigest()


def fingerprint_triples(
    user_ids: np.ndarray, offsets: np.ndarray, item_ids: np.ndarray
) -> np.ndarray:
    """[U, 3] little-endian int64 (user id, second-to-last item or 0, last item or 0)."""
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    triples = np.zeros((lengths.size, 3), dtype="<i8")
    triples[:, 0] = user_ids
    has_events = lengths >= 1
    last = offsets[1:] - 1
    triples[has_events, 2] = item_ids[last[has_events]]
    has_two = lengths >= 2
    triples[has_two, 1] = item_ids[last[has_two] - 1]
    return triples


def _stable_user_time_order(users: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """[T] int64 permutation sorting by (user, timestamp), ties in input order.

    Integer timestamps: one stable argsort of the key user_rank * span + (t - t_min), about 3x
    faster than np.lexsort on 20M events. Otherwise (floats, or a key that could overflow
    int64) np.lexsort, which is stable too.
    """
    if np.issubdtype(timestamps.dtype, np.integer) and np.issubdtype(users.dtype, np.integer):
        ranks, uniques = pd.factorize(users, sort=True)
        t_min = int(timestamps.min())
        span = int(timestamps.max()) - t_min + 1
        if len(uniques) * span < 2**62:
            key = ranks.astype(np.int64) * np.int64(span) + (timestamps.astype(np.int64) - t_min)
            return np.argsort(key, kind="stable").astype(np.int64, copy=False)
    return np.lexsort((timestamps, users)).astype(np.int64, copy=False)


def training_item_counts(
    offsets: np.ndarray, item_ids: np.ndarray, item_counts: np.ndarray, ignore_last_n: int
) -> np.ndarray:
    """[max item id + 1] int64 interactions per item id in the training split.

    The training split (``SequenceDataset(ignore_last_n=n)``) holds, for each user with at least
    ``n + 2`` events, every event except the last ``n`` (its window's inputs and its target); a
    user with fewer events is not trained on. So the counts are the store's ``item_counts`` minus
    each user's last ``n`` events, minus all events of the shorter users: at most ``n + 1`` reads
    per user, never a pass over every interaction. (A window cut at ``max_sequence_length`` or
    thinned by positional sampling sees fewer events; those are still counted.)

    Args:
        offsets: [U + 1] int64; item_ids: [T] int64 (may be memory-mapped);
        item_counts: [max item id + 1] int64, the store's counts over all T events.
        ignore_last_n: the training split's held-out events per user (1 under the test protocol,
            2 under the validation protocol).
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    # Events removed per user: the last n, or all of them when the user is not trained on.
    removed = np.where(lengths >= ignore_last_n + 2, ignore_last_n, lengths)
    counts = np.array(item_counts, dtype=np.int64)
    for k in range(int(ignore_last_n) + 1):
        users = np.flatnonzero(removed > k)
        if users.size == 0:
            break
        positions = offsets[users + 1] - 1 - k
        counts -= np.bincount(np.asarray(item_ids[positions]), minlength=counts.shape[0])[
            : counts.shape[0]
        ]
    return counts

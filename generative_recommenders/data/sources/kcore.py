"""The iterative k-core filter: keep only events whose user and item both have >= k events.

Dropping a rare item can leave a user below k, whose removal can leave another item below k, and
so on; one pass of per-user and per-item counts is therefore not enough. The loop recounts on
what is left until nothing changes (a fixpoint): every remaining user and item then has at least
k events among the remaining ones. The fixpoint is unique (the largest such sub-multiset), so
the order of removals does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KCoreResult:
    """Which events survive, and how many removal rounds it took.

    Attributes:
        keep: [T] bool, events in the k-core.
        rounds: passes that removed something (0 when the input already was a k-core).
    """

    keep: np.ndarray
    rounds: int


def k_core(users: np.ndarray, items: np.ndarray, k: int) -> KCoreResult:
    """The k-core of the bipartite multigraph of (user, item) events.

    Args:
        users: [T] non-negative integer user codes. items: [T] non-negative integer item codes.
        k: minimum number of events per user and per item; k <= 1 keeps everything.

    Repeated (user, item) pairs count once per event, as the raw files list them.
    """
    total = int(users.shape[0])
    if k <= 1 or total == 0:
        return KCoreResult(np.ones(total, dtype=bool), 0)
    # int32 codes halve the memory of the working copies (codes < 2^31 in any real category).
    index = np.arange(total, dtype=np.int64)
    u = np.asarray(users, dtype=np.int32)
    i = np.asarray(items, dtype=np.int32)
    rounds = 0
    while index.size:
        ok = (np.bincount(u)[u] >= k) & (np.bincount(i)[i] >= k)
        if ok.all():
            break
        rounds += 1
        index, u, i = index[ok], u[ok], i[ok]
    keep = np.zeros(total, dtype=bool)
    keep[index] = True
    return KCoreResult(keep, rounds)

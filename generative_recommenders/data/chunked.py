"""``--dataset csv`` for files larger than memory: the same store, built in chunks.

Three passes, each holding one chunk of rows (plus per-id tables: counts and mappings):

1. Read the file chunk by chunk, validate every column (the same one-line errors as the
   in-memory reader) and count events per user id and per item id.
2. Read it again: apply the frequency filters, map ids to their final codes (items 1..n in
   sorted order of the original ids; string user ids likewise; integer user ids kept), and
   append each event to the partition of its user. Partitions are contiguous ranges of the
   sorted user keys holding about ``chunk_rows`` events each, so concatenating them in order
   gives the users in the same order as the in-memory build.
3. Per partition: stable sort by (user, timestamp), ties in file order (events are appended
   in file order), drop users with too few events, and stream the users into the store.

The result is identical to the in-memory build (tests compare the two); peak memory is set by
``chunk_rows`` and the number of distinct ids, not by the file's size.
"""

from __future__ import annotations

import pathlib
import shutil
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from generative_recommenders.data.raw_files import sha256_file
from generative_recommenders.data.readers import ReadPlan
from generative_recommenders.data.splits import group_by_user
from generative_recommenders.data.store import (
    ITEM_ID_MAPPING,
    USER_ID_MAPPING,
    open_store_writer,
    store_path,
)
from generative_recommenders.errors import UserInputError

# Per event in a partition file: user (8), item (8), timestamp (8), rating (4).
_PARTITION_COLUMNS = {
    "user": np.dtype(np.int64),
    "item": np.dtype(np.int64),
    "timestamp": np.dtype(np.int64),  # float64 when the file has fractional times
    "rating": np.dtype(np.float32),
}


@dataclass
class _IdCounts:
    """Events per distinct id of one column over all chunks: integer ids or string labels."""

    counts: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.int64))
    strings: bool | None = None  # None until the first chunk

    def add(self, value: np.ndarray | tuple) -> bool:
        """Count one chunk's ids; False when its kind (int / str) differs from earlier chunks."""
        is_str = isinstance(value, tuple)
        if self.strings is not None and is_str != self.strings:
            return False
        self.strings = is_str
        if is_str:
            codes, labels = value
            chunk = pd.Series(np.bincount(codes, minlength=len(labels)), index=labels)
        else:
            uniques, counts = np.unique(value, return_counts=True)
            chunk = pd.Series(counts, index=uniques)
        self.counts = self.counts.add(chunk, fill_value=0).astype(np.int64)
        return True


class _Codes:
    """Codes of one id column. Pass 2 uses provisional codes: 1..K over the ids that pass the
    frequency filter, in sorted order (or the integer id itself for integer user ids), and
    records which occur in kept events; final codes number only those (the in-memory build
    numbers the ids of kept events). Both orders agree, so partitions stay in order."""

    def __init__(self, counts: _IdCounts, min_count: int, keep_integers: bool):
        kept = counts.counts[counts.counts >= min_count]
        if counts.strings:
            kept = kept.sort_index(key=lambda idx: idx.astype(str))
        else:
            kept = kept.sort_index()
        self.ids = pd.Index(kept.index)  # sorted ids that pass the filter (int64 or str)
        self.counts = kept.to_numpy()
        self.keep_integers = keep_integers and not counts.strings
        self.seen = np.zeros(len(self.ids) + 1, dtype=bool)  # by provisional code

    def lookup(self, value: np.ndarray | tuple) -> tuple[np.ndarray, np.ndarray]:
        """(passes [C] bool, provisional code [C] int64, 0 where it does not pass)."""
        if isinstance(value, tuple):
            codes, labels = value
            positions = self.ids.get_indexer(pd.Index(labels))[codes]
        else:
            positions = self.ids.get_indexer(value)
        passes = positions >= 0
        if self.keep_integers:
            return passes, np.where(passes, np.asarray(value), 0).astype(np.int64)
        return passes, np.where(passes, positions + 1, 0).astype(np.int64)

    def mark_seen(self, provisional: np.ndarray) -> None:
        if not self.keep_integers:
            self.seen[provisional] = True

    def final(self) -> np.ndarray | None:
        """[K + 1] int64 provisional -> final code, or None for kept integer ids."""
        if self.keep_integers:
            return None
        return np.cumsum(self.seen).astype(np.int64)

    def mapping(self, kind: str) -> pd.DataFrame:
        """original (str) -> final code, for the ids that occur."""
        occurring = self.ids[self.seen[1:]]
        return pd.DataFrame(
            {
                "original": np.asarray(occurring.astype(str), dtype=object),
                f"{kind}_id": np.arange(1, len(occurring) + 1),
            }
        )


def _count_pass(plan: ReadPlan) -> tuple[dict[str, _IdCounts], bool, int] | set[str]:
    """Pass 1: (user and item counts, any fractional timestamp, rows), or the names of id
    columns whose chunks disagreed on integer vs string (to be re-read as strings)."""
    counts = {"user": _IdCounts(), "item": _IdCounts()}
    fractional, rows = False, 0
    for chunk in plan.chunks():
        for role in counts:
            if not counts[role].add(chunk[role]):
                return {plan.present[role].name}
        fractional |= chunk["timestamp"].dtype.kind == "f"
        rows += len(chunk["timestamp"])
    return counts, fractional, rows


def _partition_bounds(users: _Codes, chunk_rows: int) -> np.ndarray:
    """[P + 1] user codes: partition p holds codes in [bounds[p], bounds[p + 1])."""
    if users.keep_integers:
        keys = users.ids.to_numpy(np.int64)
    else:
        keys = np.arange(1, len(users.ids) + 1, dtype=np.int64)
    ends = np.cumsum(users.counts)
    # Cut where the running count passes each multiple of chunk_rows.
    cuts = np.searchsorted(ends, np.arange(chunk_rows, int(ends[-1]), chunk_rows), side="left")
    firsts = np.unique(np.concatenate([[0], cuts + 1]))
    firsts = firsts[firsts < keys.size]
    return np.concatenate([keys[firsts], [keys[-1] + 1]]).astype(np.int64)


def build_chunked(name: str, plan: ReadPlan, opts, path: pathlib.Path, hint_columns: dict):
    """Build the store ``name`` from the delimited file of ``plan``; returns its Summary."""
    from generative_recommenders.data.preprocess import Summary  # the printed summary

    start = time.perf_counter()
    counted = _count_pass(plan)
    if isinstance(counted, set):
        plan = plan.with_strings(counted)
        counted = _count_pass(plan)
        assert not isinstance(counted, set)
    counts, fractional, raw_rows = counted
    items = _Codes(counts["item"], opts.min_item_interactions, keep_integers=False)
    users = _Codes(counts["user"], opts.min_user_interactions, keep_integers=True)
    raw_users = len(counts["user"].counts)
    if len(users.ids) == 0 or len(items.ids) == 0:
        raise UserInputError(
            f"{name}: no user has at least {opts.min_user_interactions} events "
            f"({raw_users} users, {raw_rows} events read)"
        )
    bounds = _partition_bounds(users, plan.chunk_rows)
    ts_dtype = np.dtype(np.float64) if fractional else np.dtype(np.int64)
    has_rating = "rating" in plan.present
    work = path.parent / f".{path.name}.partitions-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True)
    try:
        kept_rows = _partition_pass(plan, items, users, bounds, ts_dtype, work)
        tables = {ITEM_ID_MAPPING: items.mapping("item")}
        if counts["user"].strings:
            tables[USER_ID_MAPPING] = users.mapping("user")
        stats = {
            "raw_interactions": int(raw_rows),
            "raw_users": int(raw_users),
            "interactions_dropped_by_frequency_filter": int(raw_rows - kept_rows),
            "columns": {role: c.name for role, c in hint_columns.items() if role in plan.present},
        }
        with open_store_writer(path, int(len(items.ids)) + 1) as writer:
            short = _write_partitions(
                work, len(bounds) - 1, ts_dtype, opts, writer, items.final(), users.final()
            )
            if writer.num_users == 0:
                raise UserInputError(
                    f"{name}: no user has at least {opts.min_user_interactions} events "
                    f"({raw_users} users, {raw_rows} events read)"
                )
            meta = writer.finish(
                {
                    "dataset": name,
                    "semantics": _semantics(opts, counts["user"].strings),
                    "source_files": {opts.input_file.name: sha256_file(opts.input_file)},
                    "has_ratings": has_rating,
                    "min_user_interactions": int(opts.min_user_interactions),
                    "users_dropped": int(raw_users) - writer.num_users,
                    "timestamps_floored_to_seconds": bool(fractional),
                    "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    **stats,
                },
                tables=tables,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    length = meta["sequence_length"]
    return Summary(
        dataset=name,
        path=path,
        num_users=meta["num_users"],
        num_items=meta["num_items"],
        num_interactions=meta["num_interactions"],
        max_item_id=meta["max_item_id"],
        length_min=length["min"],
        length_mean=length["mean"],
        length_max=length["max"],
        users_dropped=meta["users_dropped"],
        min_user_interactions=int(opts.min_user_interactions),
        users_too_short_for_eval=short,
        target_fingerprint=meta["target_fingerprint"],
        seconds=time.perf_counter() - start,
    )


def _semantics(opts, string_users: bool) -> str:
    # The same text as the in-memory build (data/sources/custom.py).
    return (
        f"item ids mapped to 1..n (item_id_mapping.csv); "
        f"{'user ids mapped to 1..n' if string_users else 'integer user ids kept'}; "
        f"users < {opts.min_user_interactions} and items < {opts.min_item_interactions} "
        "interactions dropped (one pass, raw counts), then users left with < "
        f"{opts.min_user_interactions} events dropped"
    )


def _partition_pass(plan, items: _Codes, users: _Codes, bounds, ts_dtype, work) -> int:
    """Pass 2: append every kept event to its user's partition files; returns events kept."""
    kept_total = 0
    for chunk in plan.chunks():
        keep_item, item = items.lookup(chunk["item"])
        keep_user, user = users.lookup(chunk["user"])
        keep = keep_item & keep_user
        items.mark_seen(item[keep])
        users.mark_seen(user[keep])
        columns = {
            "user": user[keep],
            "item": item[keep],
            "timestamp": chunk["timestamp"][keep].astype(ts_dtype),
            "rating": (
                chunk["rating"][keep]
                if "rating" in chunk
                else np.zeros(int(keep.sum()), dtype=np.float32)
            ),
        }
        part = np.searchsorted(bounds, columns["user"], side="right") - 1
        order = np.argsort(part, kind="stable")  # file order within each partition
        splits = np.searchsorted(part[order], np.arange(len(bounds)))
        for p in np.unique(part):
            rows = order[splits[p] : splits[p + 1]]
            for col, values in columns.items():
                with open(work / f"{p}.{col}", "ab") as f:
                    f.write(np.ascontiguousarray(values[rows]).tobytes())
        kept_total += int(keep.sum())
    return kept_total


def _write_partitions(
    work, num_partitions: int, ts_dtype, opts, writer, item_final, user_final
) -> int:
    """Pass 3: sort each partition by (user, time), drop short users, stream it to the store.
    Returns the number of users with a single event (kept; no split uses them)."""
    short = 0
    for p in range(num_partitions):
        if not (work / f"{p}.user").exists():
            continue
        cols = {
            col: np.fromfile(work / f"{p}.{col}", dtype=ts_dtype if col == "timestamp" else dtype)
            for col, dtype in _PARTITION_COLUMNS.items()
        }
        if user_final is not None:
            cols["user"] = user_final[cols["user"]]
        cols["item"] = item_final[cols["item"]]
        grouped = group_by_user(cols["user"], cols["timestamp"])
        lengths = np.diff(grouped.offsets)
        keep_user = lengths >= opts.min_user_interactions
        order = grouped.order[np.repeat(keep_user, lengths)]
        lengths = lengths[keep_user]
        timestamps = cols["timestamp"][order]
        if timestamps.dtype.kind == "f":
            timestamps = np.floor(timestamps)
        writer.append(
            grouped.user_keys[keep_user],
            lengths,
            cols["item"][order],
            cols["rating"][order],
            timestamps.astype(np.int64),
        )
        short += int(np.count_nonzero(lengths < 2))
        for col in _PARTITION_COLUMNS:
            (work / f"{p}.{col}").unlink()
    return short


__all__ = ["build_chunked", "store_path"]

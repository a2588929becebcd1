"""Raw interactions -> sequence store, and the summary printed at the end of preprocessing."""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from generative_recommenders.data.chunked import build_chunked
from generative_recommenders.data.sources import SourceOptions, amazon_2023, get_source
from generative_recommenders.data.sources.base import Interactions
from generative_recommenders.data.sources.custom import chunk_plan, store_name, use_chunks
from generative_recommenders.data.splits import (
    FINGERPRINT_DEFINITION,
    group_by_user,
    target_fingerprint,
)
from generative_recommenders.data.store import store_path, write_store
from generative_recommenders.errors import UserInputError


@dataclass
class Summary:
    """What a preprocessing run produced (printed by preprocess_public_data.py)."""

    dataset: str
    path: pathlib.Path
    num_users: int
    num_items: int
    num_interactions: int
    max_item_id: int
    length_min: int
    length_mean: float
    length_max: int
    users_dropped: int
    min_user_interactions: int
    users_too_short_for_eval: int
    target_fingerprint: str
    seconds: float
    k_core: dict | None = None  # {"k", "rounds", "before", "after"} when a k-core was applied

    def lines(self) -> list[str]:
        out = [f"dataset            {self.dataset}"]
        if self.k_core is not None:
            before, after = self.k_core["before"], self.k_core["after"]
            out += [
                f"before k-core      {_counts(before)}",
                f"after {self.k_core['k']}-core       {_counts(after)} "
                f"({self.k_core['rounds']} rounds)",
            ]
        out += [
            f"users              {self.num_users:,}",
            f"items              {self.num_items:,}",
            f"interactions       {self.num_interactions:,}",
            f"max item id        {self.max_item_id:,}",
            f"sequence length    {self.length_min:,} / {self.length_mean:.2f} / "
            f"{self.length_max:,} (min / mean / max)",
        ]
        if self.min_user_interactions > 1:
            out.append(
                f"users dropped      {self.users_dropped:,} "
                f"(fewer than {self.min_user_interactions} events)"
            )
        if self.users_too_short_for_eval:
            out.append(
                f"short users        {self.users_too_short_for_eval:,} with a single event "
                "(kept; no split uses them)"
            )
        out += [
            f"target fingerprint {self.target_fingerprint[:16]}",
            f"output             {self.path}/",
            f"time               {self.seconds:.1f} s",
        ]
        return out


def _counts(counts: dict) -> str:
    return (
        f"{counts['users']:,} users, {counts['items']:,} items, "
        f"{counts['interactions']:,} interactions"
    )


def preprocess(dataset: str, opts: SourceOptions) -> Summary:
    """Read ``dataset``'s raw files (per ``opts``) and write its store under ``opts.data_dir``."""
    start = time.perf_counter()
    loader = get_source(dataset)
    if dataset == "csv":
        name = store_name(opts)
    elif dataset == amazon_2023.DATASET:
        name = amazon_2023.store_name(opts)
    else:
        name = dataset
    if dataset == "csv" and use_chunks(opts):
        plan, wanted = chunk_plan(opts)
        return build_chunked(name, plan, opts, store_path(opts.data_dir, name), wanted)
    interactions = loader(opts)
    return build_store(name, interactions, opts.data_dir, start=start)


def build_store(
    name: str,
    interactions: Interactions,
    data_dir: str | pathlib.Path,
    start: float | None = None,
) -> Summary:
    """Group events by user (stable time order), drop short users, write the store atomically."""
    start = time.perf_counter() if start is None else start
    inter = interactions
    with tqdm(total=4, desc=f"building {name} store", unit=" step") as bar:
        bar.set_postfix_str("sorting")
        grouped = group_by_user(inter.users, inter.timestamps)
        bar.update(1)
        lengths = np.diff(grouped.offsets)
        keep_user = lengths >= inter.min_user_interactions
        if not keep_user.any():
            raise UserInputError(
                f"{name}: no user has at least {inter.min_user_interactions} events "
                f"({lengths.size} users, {int(lengths.sum())} events read)"
            )
        order = grouped.order
        if not keep_user.all():
            order = order[np.repeat(keep_user, lengths)]
        kept_lengths = lengths[keep_user]
        offsets = np.zeros(kept_lengths.size + 1, dtype=np.int64)
        np.cumsum(kept_lengths, out=offsets[1:])
        user_ids = grouped.user_keys[keep_user]
        # Users dropped here plus those a source's frequency filter removed earlier.
        users_dropped = int(inter.stats.get("raw_users", lengths.size)) - int(kept_lengths.size)
        bar.set_postfix_str("gathering")
        item_ids = inter.items[order]
        timestamps = inter.timestamps[order]
        fractional = timestamps.dtype.kind == "f"
        if fractional:
            timestamps = np.floor(timestamps)
        timestamps = timestamps.astype(np.int64)
        if inter.ratings is None:
            ratings = np.zeros(order.size, dtype=np.float32)
        else:
            ratings = inter.ratings[order].astype(np.float32, copy=False)
        bar.update(1)
        bar.set_postfix_str("fingerprint")
        fingerprint = target_fingerprint(user_ids, offsets, item_ids)
        bar.update(1)
        bar.set_postfix_str("writing")
        meta = {
            "dataset": name,
            "semantics": inter.semantics,
            "source_files": inter.source_files,
            "has_ratings": inter.ratings is not None,
            "target_fingerprint": fingerprint,
            "fingerprint_definition": FINGERPRINT_DEFINITION,
            "min_user_interactions": int(inter.min_user_interactions),
            "users_dropped": users_dropped,
            "timestamps_floored_to_seconds": bool(fractional),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **inter.stats,
        }
        out = write_store(
            store_path(data_dir, name),
            user_ids=user_ids,
            offsets=offsets,
            item_ids=item_ids,
            ratings=ratings,
            timestamps=timestamps,
            meta=meta,
            tables=inter.tables,
        )
        bar.update(1)
    return Summary(
        dataset=name,
        path=out,
        num_users=int(kept_lengths.size),
        num_items=int(np.unique(item_ids).size),
        num_interactions=int(item_ids.size),
        max_item_id=int(item_ids.max()),
        length_min=int(kept_lengths.min()),
        length_mean=float(kept_lengths.mean()),
        length_max=int(kept_lengths.max()),
        users_dropped=users_dropped,
        min_user_interactions=int(inter.min_user_interactions),
        users_too_short_for_eval=int(np.count_nonzero(kept_lengths < 2)),
        target_fingerprint=fingerprint,
        seconds=time.perf_counter() - start,
        k_core=inter.stats.get("k_core"),
    )

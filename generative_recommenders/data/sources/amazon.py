"""Amazon Books (``ratings_Books.csv``: user,item,rating,timestamp; no header).

As in the paper: users and items with fewer than 5 interactions are dropped in one pass, with
both counts taken on the unfiltered data; the remaining items and users are mapped to contiguous
integers from 1 (0 is padding) in sorted order of their original ids; users left with fewer
than 5 events are dropped when the store is built. Expected: 695,762 item ids.
"""

from __future__ import annotations

from generative_recommenders.data.raw_files import RawFiles, download
from generative_recommenders.data.readers import Column, as_id_column, read_columns
from generative_recommenders.data.sources.base import Interactions, SourceOptions
from generative_recommenders.data.sources.remap import (
    dense_codes,
    frequency_mask,
    num_unique,
    remap,
)
from generative_recommenders.data.store import ITEM_ID_MAPPING, USER_ID_MAPPING
from generative_recommenders.registry import SOURCES

URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/ratings_Books.csv"
FILE = "ratings_Books.csv"
MIN_INTERACTIONS = 5


@SOURCES.register("amzn-books", public=True)
def load_amazon_books(opts: SourceOptions) -> Interactions:
    if opts.input_file is not None:
        raw = RawFiles(opts.input_file)
    else:
        raw = RawFiles(download(URL, opts.downloads / FILE, f"--input_file=<path to {FILE}>"))
    member = (
        raw.require(FILE, "the headerless user,item,rating,timestamp file")
        if (raw.is_archive or raw.path.is_dir())
        else str(raw.path)
    )
    names = ("user", "item", "rating", "timestamp")
    cols = read_columns(
        raw.opener(member),
        display=raw.display(member),
        names=names,
        wanted={
            "user": Column("user", "str_id"),
            "item": Column("item", "str_id"),
            "rating": Column("rating", "float"),
            "timestamp": Column("timestamp", "number"),
        },
    )
    users, items = as_id_column(cols["user"]), as_id_column(cols["item"])
    keep = frequency_mask(dense_codes(items), MIN_INTERACTIONS) & frequency_mask(
        dense_codes(users), MIN_INTERACTIONS
    )
    item_codes, item_mapping = remap(items, keep, "item")
    user_codes, user_mapping = remap(users, keep, "user")
    return Interactions(
        users=user_codes,
        items=item_codes,
        timestamps=cols["timestamp"][keep],
        ratings=cols["rating"][keep],
        min_user_interactions=MIN_INTERACTIONS,
        tables={ITEM_ID_MAPPING: item_mapping, USER_ID_MAPPING: user_mapping},
        source_files=raw.hashes([member]),
        stats={
            "raw_interactions": int(keep.size),
            "raw_users": num_unique(users),
            "interactions_dropped_by_frequency_filter": int(keep.size - keep.sum()),
        },
        semantics=(
            "users and items with < 5 interactions dropped (one pass, counts on the raw file), "
            "ids mapped to 1..n in sorted order of the original ids, then users left with < 5 "
            "events dropped"
        ),
    )

"""Amazon Reviews 2023 (McAuley Lab, one category): raw review JSON lines or the rating-only CSV.

Two published formats, told apart by content (gzip or plain text alike):

- ``<Category>.jsonl(.gz)``: one review per line, a JSON object with ``user_id``,
  ``parent_asin``, ``rating`` and ``timestamp`` (milliseconds since 1970) among others (``text``,
  ``title``, ``images``, ``asin``, ``helpful_vote``, ``verified_purchase``). Lines are streamed and
  only those four keys are kept: review text, titles and images never accumulate in memory.
- ``<Category>.csv(.gz)`` (the "rating only" files): header ``user_id,parent_asin,rating,timestamp``.

The item is ``parent_asin`` (the product; ``asin`` is a colour or size variant of it). Then the
iterative k-core (``--k_core``, default 5) keeps only users and items with >= k events among the
kept ones; user and item ids are mapped to 1..n in sorted order of the original strings
(``user_id_mapping.csv``, ``item_id_mapping.csv``). Timestamps become the store's seconds after
the events are ordered by milliseconds, so the order inside a second is the millisecond order
(ties in milliseconds keep file order). ``--meta_file meta_<Category>.jsonl(.gz)`` adds item
titles (``items.csv``) for the kept items.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import pathlib
import re
import zlib
from array import array
from collections.abc import Iterator
from typing import IO

import numpy as np
import pandas as pd
from tqdm import tqdm

from generative_recommenders.data.raw_files import download, sha256_file
from generative_recommenders.data.readers import Column, IdColumn, read_columns
from generative_recommenders.data.sources.base import Interactions, SourceOptions
from generative_recommenders.data.sources.kcore import k_core
from generative_recommenders.data.sources.remap import remap
from generative_recommenders.data.store import (
    AMAZON_2023_PREFIX,
    ITEM_ID_MAPPING,
    ITEMS_TABLE,
    USER_ID_MAPPING,
)
from generative_recommenders.errors import UserInputError
from generative_recommenders.registry import SOURCES

logger = logging.getLogger(__name__)

DATASET = "amazon-2023"
DEFAULT_K_CORE = 5
BASE_URL = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw"
CATEGORIES = (
    "All_Beauty", "Amazon_Fashion", "Appliances", "Arts_Crafts_and_Sewing", "Automotive",
    "Baby_Products", "Beauty_and_Personal_Care", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
    "Gift_Cards", "Grocery_and_Gourmet_Food", "Handmade_Products", "Health_and_Household",
    "Health_and_Personal_Care", "Home_and_Kitchen", "Industrial_and_Scientific", "Kindle_Store",
    "Magazine_Subscriptions", "Movies_and_TV", "Musical_Instruments", "Office_Products",
    "Patio_Lawn_and_Garden", "Pet_Supplies", "Software", "Sports_and_Outdoors",
    "Subscription_Boxes", "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games", "Unknown",
)  # fmt: skip
CSV_COLUMNS = ("user_id", "parent_asin", "rating", "timestamp")
_REVIEW_KEYS = "user_id, parent_asin, rating and timestamp"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SUFFIXES = (".gz", ".jsonl", ".json", ".csv")
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_MS = 10**15  # year ~33,700: anything larger is not milliseconds (and could overflow int64)
_BAR_EVERY = 1 << 16  # lines between progress-bar updates (a tell() per line costs time)


def review_url(category: str) -> str:
    return f"{BASE_URL}/review_categories/{category}.jsonl.gz"


def _category(opts: SourceOptions) -> str | None:
    """--category, else the input file's name without .jsonl/.csv/.gz (``Video_Games``)."""
    if opts.category is not None:
        return opts.category
    if opts.input_file is None:
        return None
    name = opts.input_file.name
    while pathlib.PurePath(name).suffix.lower() in _SUFFIXES:
        name = name[: -len(pathlib.PurePath(name).suffix)]
    return name or None


def store_name(opts: SourceOptions) -> str:
    """``--name``, else ``amazon-2023-<Category>``; a safe directory name."""
    category = _category(opts)
    if opts.name is None and category is None:
        raise UserInputError(_needs_category())
    name = opts.name or f"{AMAZON_2023_PREFIX}{category}"
    if not _NAME.match(name):
        raise UserInputError(
            f"store name {name!r}: expected letters, digits, '.', '_' or '-' "
            "(set --category or --name)"
        )
    return name


def _needs_category() -> str:
    return (
        f"--dataset={DATASET} needs --category=<one of {', '.join(CATEGORIES)}> to download, "
        "or --input_file=<Category>.jsonl.gz"
    )


@SOURCES.register("amazon-2023")
def load_amazon_2023(opts: SourceOptions) -> Interactions:
    k = DEFAULT_K_CORE if opts.k_core is None else opts.k_core
    if k < 0:
        raise UserInputError(f"--k_core={k}: expected an integer >= 0 (0 or 1: no filter)")
    path = _review_file(opts)
    if opts.meta_file is not None and not opts.meta_file.is_file():
        raise UserInputError(f"{opts.meta_file}: no such file (--meta_file)")
    users, items, ratings, millis = _read_reviews(path)
    before = _counts(users.values, items.values)
    result = k_core(users.values, items.values, k)
    keep = result.keep
    after = _counts(users.values[keep], items.values[keep])
    if after["interactions"] == 0:
        raise UserInputError(
            f"{path}: the {k}-core is empty, no users and items with >= {k} interactions each "
            f"are left (before: {before['users']:,} users, {before['items']:,} items, "
            f"{before['interactions']:,} interactions; {result.rounds} rounds); "
            "lower --k_core"
        )
    item_codes, item_mapping = remap(items, keep, "item")
    user_codes, user_mapping = remap(users, keep, "user")
    tables = {ITEM_ID_MAPPING: item_mapping, USER_ID_MAPPING: user_mapping}
    source_files = {path.name: sha256_file(path)}
    if opts.meta_file is not None:
        tables[ITEMS_TABLE] = _titles(opts.meta_file, item_mapping)
        source_files[opts.meta_file.name] = sha256_file(opts.meta_file)
    # Seconds as float64 (exact for milliseconds: 1.7e12 ms < 2^53): the store builder orders
    # each user's events by these values, stable in file order, and only then floors to whole
    # seconds, so the millisecond order inside a second survives.
    seconds = millis[keep] / 1000.0
    return Interactions(
        users=user_codes,
        items=item_codes,
        timestamps=seconds,
        ratings=ratings[keep],
        min_user_interactions=max(k, 1),
        tables=tables,
        source_files=source_files,
        stats={
            "raw_interactions": before["interactions"],
            "raw_users": before["users"],
            "interactions_dropped_by_frequency_filter": int(keep.size - int(keep.sum())),
            "k_core": {"k": k, "rounds": result.rounds, "before": before, "after": after},
            "timestamp_unit": "milliseconds in the file; seconds in the store",
        },
        semantics=(
            f"item = parent_asin; iterative {k}-core (users and items with >= {k} interactions "
            "among the kept ones); user and item ids mapped to 1..n in sorted order of the "
            "original strings; events ordered by millisecond timestamps, then floored to seconds"
        ),
    )


def _counts(users: np.ndarray, items: np.ndarray) -> dict[str, int]:
    return {
        "users": int(np.unique(users).size),
        "items": int(np.unique(items).size),
        "interactions": int(users.size),
    }


def _review_file(opts: SourceOptions) -> pathlib.Path:
    if opts.input_file is not None:
        if not opts.input_file.is_file():
            raise UserInputError(f"{opts.input_file}: no such file")
        return opts.input_file
    category = opts.category
    if category is None:
        raise UserInputError(_needs_category())
    if category not in CATEGORIES:
        raise UserInputError(
            f"--category={category!r}: not an Amazon Reviews 2023 category, expected one of "
            f"{', '.join(CATEGORIES)}"
        )
    file = f"{category}.jsonl.gz"
    return download(review_url(category), opts.downloads / file, f"--input_file=<path to {file}>")


# ---------------------------------------------------------------------------- reading


def _open(path: pathlib.Path) -> tuple[IO[bytes], IO[bytes]]:
    """(raw file, decompressed stream): gzip by its magic bytes, whatever the extension."""
    raw = open(path, "rb")
    gzipped = raw.read(2) == _GZIP_MAGIC
    raw.seek(0)
    return raw, (gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw)


def _first_line(path: pathlib.Path) -> bytes:
    raw, stream = _open(path)
    try:
        with raw, stream:
            for line in stream:
                if line.strip():
                    return line.strip()
    except (OSError, EOFError, zlib.error) as e:
        raise UserInputError(f"{path}: truncated or corrupt gzip file ({e})") from None
    raise UserInputError(f"{path}: the file is empty, expected reviews (JSON lines) or the CSV")


def _read_reviews(path: pathlib.Path) -> tuple[IdColumn, IdColumn, np.ndarray, np.ndarray]:
    """(users, items, ratings [T] float32, timestamps [T] int64 ms) in file order."""
    first = _first_line(path)
    if first.startswith(b"{"):
        return _read_jsonl(path)
    header = first.lstrip(b"\xef\xbb\xbf").decode("utf-8", "replace").split(",")
    if set(CSV_COLUMNS) <= {h.strip().strip('"') for h in header}:
        return _read_csv(path)
    raise UserInputError(
        f"{path}: line 1 is neither a JSON review nor the CSV header "
        f"{','.join(CSV_COLUMNS)} (got {first[:60].decode('utf-8', 'replace')!r})"
    )


def _lines(path: pathlib.Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of a plain or gzipped text file, behind a progress bar in bytes."""
    raw, stream = _open(path)
    size = path.stat().st_size
    try:
        with (
            raw,
            stream,
            tqdm(desc=f"reading {path.name}", total=size, unit="B", unit_scale=True) as bar,
        ):
            for number, line in enumerate(stream, start=1):
                yield number, line
                if number % _BAR_EVERY == 0:
                    bar.update(raw.tell() - bar.n)
            bar.update(size - bar.n)
    except (OSError, EOFError, zlib.error) as e:
        raise UserInputError(f"{path}: truncated or corrupt gzip file ({e})") from None


def _parse(path: pathlib.Path, number: int, line: bytes) -> dict:
    try:
        record = json.loads(line)
    except ValueError as e:  # JSONDecodeError, or bytes that are not UTF-8
        what = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8 text"
        raise UserInputError(f"{path}: line {number}: not valid JSON ({what})") from None
    if not isinstance(record, dict):
        raise UserInputError(f"{path}: line {number}: expected a JSON object, got JSON text")
    return record


_EXPECTED = {
    "user_id": "a user id string",
    "parent_asin": "a product id string",
    "timestamp": "milliseconds since 1970",
    "rating": "a number",
}


def _missing(path: pathlib.Path, number: int, record: dict) -> UserInputError:
    key = next(k for k in _EXPECTED if k not in record)
    return UserInputError(
        f"{path}: line {number}: no {key!r}, expected {_EXPECTED[key]} "
        f"(a review has {_REVIEW_KEYS})"
    )


def _bad_id(path: pathlib.Path, number: int, user: object, item: object) -> UserInputError:
    key, value = ("user_id", user) if type(user) is not str or not user else ("parent_asin", item)
    return UserInputError(
        f"{path}: line {number}: {key!r} is {_short(value)}, expected a non-empty string"
    )


def _read_jsonl(path: pathlib.Path) -> tuple[IdColumn, IdColumn, np.ndarray, np.ndarray]:
    # Ids are interned into dicts (string -> first-seen code) and the four values go into
    # compact typed arrays: memory grows with events and distinct ids, never with review text.
    user_codes: dict[str, int] = {}
    item_codes: dict[str, int] = {}
    users, items = array("i"), array("i")
    ratings, millis = array("f"), array("q")
    for number, line in _lines(path):
        if not line.strip():
            continue
        record = _parse(path, number, line)
        try:  # one try for the four keys: this loop runs once per review
            user, item = record["user_id"], record["parent_asin"]
            stamp, rating = record["timestamp"], record["rating"]
        except KeyError:
            raise _missing(path, number, record) from None
        if type(user) is not str or type(item) is not str or not user or not item:
            raise _bad_id(path, number, user, item)
        if type(stamp) is float and stamp.is_integer():
            stamp = int(stamp)
        if type(stamp) is not int or not 0 <= stamp < _MAX_MS:
            raise UserInputError(
                f"{path}: line {number}: 'timestamp' is {_short(stamp)}, expected an "
                "integer number of milliseconds since 1970"
            )
        if type(rating) not in (int, float) or not math.isfinite(rating):
            raise UserInputError(
                f"{path}: line {number}: 'rating' is {_short(rating)}, expected a number"
            )
        users.append(user_codes.setdefault(user, len(user_codes)))
        items.append(item_codes.setdefault(item, len(item_codes)))
        ratings.append(rating)
        millis.append(stamp)
    if not millis:
        raise UserInputError(f"{path}: no reviews, expected one JSON object per line")
    return (
        _sorted_ids(np.frombuffer(users, dtype=np.int32), user_codes),
        _sorted_ids(np.frombuffer(items, dtype=np.int32), item_codes),
        np.frombuffer(ratings, dtype=np.float32),
        np.frombuffer(millis, dtype=np.int64),
    )


def _sorted_ids(codes: np.ndarray, interned: dict[str, int]) -> IdColumn:
    """First-seen codes -> an IdColumn whose codes index labels sorted ascending."""
    labels = np.fromiter(interned, dtype=object, count=len(interned))
    interned.clear()  # the dict's memory goes before the next allocations
    order = np.argsort(labels, kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size, dtype=np.int64)
    return IdColumn(rank[codes], labels[order])


def _read_csv(path: pathlib.Path) -> tuple[IdColumn, IdColumn, np.ndarray, np.ndarray]:
    def open_fn() -> IO[bytes]:
        with open(path, "rb") as probe:
            gzipped = probe.read(2) == _GZIP_MAGIC
        return gzip.open(path, "rb") if gzipped else open(path, "rb")

    try:
        cols = read_columns(
            open_fn,
            display=str(path),
            wanted={
                "user": Column("user_id", "str_id"),
                "item": Column("parent_asin", "str_id"),
                "rating": Column("rating", "float"),
                "timestamp": Column("timestamp", "int"),
            },
        )
    except OSError as e:  # gzip.BadGzipFile is an OSError the CSV reader passes on
        raise UserInputError(f"{path}: truncated or corrupt gzip file ({e})") from None
    return cols["user"], cols["item"], cols["rating"], cols["timestamp"]


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


# ---------------------------------------------------------------------------- titles


def _titles(meta_file: pathlib.Path, item_mapping: pd.DataFrame) -> pd.DataFrame:
    """items.csv (item_id, title) for the kept items, from ``meta_<Category>.jsonl(.gz)``."""
    code_of = dict(zip(item_mapping["original"], item_mapping["item_id"], strict=True))
    titles: dict[int, str] = {}
    for number, line in _lines(meta_file):
        if not line.strip():
            continue
        record = _parse(meta_file, number, line)
        asin = record.get("parent_asin")
        if type(asin) is not str:
            raise UserInputError(
                f"{meta_file}: line {number}: 'parent_asin' is {_short(asin)}, expected the "
                "product id string of an item metadata line"
            )
        code = code_of.get(asin)
        if code is not None:
            title = record.get("title")
            titles[int(code)] = " ".join(title.split()) if isinstance(title, str) else ""
    missing = len(code_of) - len(titles)
    if missing:
        logger.warning("%s: no title for %d of %d items", meta_file, missing, len(code_of))
    ids = item_mapping["item_id"].to_numpy(dtype=np.int64)
    return pd.DataFrame({"item_id": ids, "title": [titles.get(int(i), "") for i in ids]})

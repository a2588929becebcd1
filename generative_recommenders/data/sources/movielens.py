"""MovieLens 100K / 1M / 20M.

Raw MovieLens user and movie ids are kept (no remapping): side information joins on them and
embedding tables are sized by the max id, as in the paper (ML-1M: 3,706 movies, max id 3,952;
ML-20M: 26,744 movies, max id 131,262). Every user is kept (MovieLens users have >= 20 ratings).
"""

from __future__ import annotations

import csv
import io
import logging
import re

import numpy as np
import pandas as pd

from generative_recommenders.data.raw_files import (
    RawFiles,
    bytes_opener,
    download,
    pip_download_wheel,
    verify_sha256,
)
from generative_recommenders.data.readers import Column, read_columns
from generative_recommenders.data.sources.base import Interactions, SourceOptions
from generative_recommenders.data.store import ITEMS_TABLE
from generative_recommenders.errors import UserInputError
from generative_recommenders.registry import SOURCES

logger = logging.getLogger(__name__)

RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
URLS = {
    "ml-1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
    "ml-20m": "https://files.grouplens.org/datasets/movielens/ml-20m.zip",
}
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_SEMANTICS = "raw MovieLens user and movie ids (no remapping); every user kept"
_ROLES = ("user", "item", "rating", "timestamp")


def _kinds(names: tuple[str, ...]) -> dict[str, Column]:
    kinds = {"user": "int", "item": "int", "rating": "float", "timestamp": "number"}
    return {role: Column(name, kinds[role]) for role, name in zip(_ROLES, names, strict=True)}


def _interactions(cols: dict, display: str, names: tuple[str, ...]) -> Interactions:
    users, items = cols["user"], cols["item"]
    for arr, name in ((users, names[0]), (items, names[1])):
        bad = arr < 1
        if bad.any():
            i = int(np.argmax(bad))
            raise UserInputError(
                f"{display}: row {i + 1}, column '{name}': got {int(arr[i])}, expected a positive "
                "integer id (0 is reserved for padding)"
            )
    return Interactions(
        users=users,
        items=items,
        timestamps=cols["timestamp"],
        ratings=cols["rating"],
        min_user_interactions=1,
        semantics=_SEMANTICS,
    )


def _items_table(ids: list[int], titles: list[str], genres: list[str], years=None) -> pd.DataFrame:
    """item_id, title (year stripped), genres ("|"-separated), year (nullable int)."""
    clean_titles, parsed_years = [], []
    for title in titles:
        m = _YEAR.search(title)
        clean_titles.append(title[: m.start()] if m else title.strip())
        parsed_years.append(int(m.group(1)) if m else None)
    if years is not None:
        parsed_years = [
            int(y) if str(y).strip().isdigit() else p
            for y, p in zip(years, parsed_years, strict=True)
        ]
    table = pd.DataFrame(
        {
            "item_id": np.asarray(ids, dtype=np.int64),
            "title": clean_titles,
            "genres": genres,
            "year": pd.array(parsed_years, dtype="Int64"),
        }
    )
    return table.sort_values("item_id", kind="stable").reset_index(drop=True)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _split_lines(text: str, sep: str, fields: int, display: str) -> list[list[str]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(sep, fields - 1)
        if len(parts) != fields or not parts[0].strip().isdigit():
            raise UserInputError(
                f"{display}: line {n}: expected {fields} '{sep}'-separated fields starting with "
                f"an integer movie id, got {line[:60]!r}"
            )
        rows.append(parts)
    return rows


# ---------------------------------------------------------------------------- ml-100k


@SOURCES.register("ml-100k", public=True)
def load_ml_100k(opts: SourceOptions) -> Interactions:
    """ML-100K from the RecBole 1.2.1 wheel (default) or GroupLens ``ml-100k.zip``."""
    hint = f"--input_file=<path to {RECBOLE_WHEEL} or GroupLens ml-100k.zip>"
    if opts.input_file is None:
        path = pip_download_wheel(
            RECBOLE_REQUIREMENT, RECBOLE_WHEEL, RECBOLE_WHEEL_SHA256, opts.downloads, hint
        )
    else:
        path = opts.input_file
        if path.suffix == ".whl":
            if not path.is_file():
                raise UserInputError(f"{path}: no such file")
            verify_sha256(path, RECBOLE_WHEEL_SHA256)
    raw = RawFiles(path)
    inter = raw.find("ml-100k.inter")
    if inter is not None:
        result = _read_recbole(raw, inter)
        members = [inter]
    else:
        udata = raw.require("u.data", "ml-100k.inter (RecBole) or u.data (GroupLens ml-100k)")
        result = _read_udata(raw, udata)
        members = [udata]
    result.source_files = raw.hashes(members)
    return result


def _read_recbole(raw: RawFiles, member: str) -> Interactions:
    names = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
    display = raw.display(member)
    cols = read_columns(
        raw.opener(member), display=display, sep="\t", wanted=_kinds(names),
        quoting=csv.QUOTE_NONE,
    )  # fmt: skip
    result = _interactions(cols, display, names)
    item_member = raw.find("ml-100k.item")
    if item_member is not None:
        table = pd.read_csv(
            io.StringIO(_decode(raw.read_bytes(item_member))), sep="\t", dtype=str,
            keep_default_na=False, quoting=csv.QUOTE_NONE,
        )  # fmt: skip
        needed = ["item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq"]
        if all(c in table.columns for c in needed):
            result.tables[ITEMS_TABLE] = _items_table(
                [int(x) for x in table[needed[0]]],
                list(table[needed[1]]),
                ["|".join(g.split()) for g in table[needed[3]]],
                years=list(table[needed[2]]),
            )
    return result


def _read_udata(raw: RawFiles, member: str) -> Interactions:
    names = ("user_id", "item_id", "rating", "timestamp")
    display = raw.display(member)
    cols = read_columns(
        raw.opener(member), display=display, sep="\t", names=names, wanted=_kinds(names)
    )
    result = _interactions(cols, display, names)
    item_member = raw.find("u.item")
    if item_member is not None:
        rows = _split_lines(
            raw.read_bytes(item_member).decode("latin-1"), "|", 5 + len(ML100K_GENRES),
            raw.display(item_member),
        )  # fmt: skip
        genres = [
            "|".join(g for g, flag in zip(ML100K_GENRES, r[5:], strict=True) if flag.strip() == "1")
            for r in rows
        ]
        result.tables[ITEMS_TABLE] = _items_table(
            [int(r[0]) for r in rows], [r[1] for r in rows], genres
        )
    return result


# ---------------------------------------------------------------------------- ml-1m / ml-20m


def _raw_release(opts: SourceOptions, dataset: str) -> RawFiles:
    if opts.input_file is not None:
        return RawFiles(opts.input_file)
    url = URLS[dataset]
    archive = opts.downloads / url.rsplit("/", 1)[-1]
    return RawFiles(download(url, archive, f"--input_file=<path to {archive.name}>"))


@SOURCES.register("ml-1m", public=True)
def load_ml_1m(opts: SourceOptions) -> Interactions:
    """ML-1M: ``ratings.dat`` (UserID::MovieID::Rating::Timestamp) and latin-1 ``movies.dat``."""
    raw = _raw_release(opts, "ml-1m")
    member = raw.require(
        "ratings.dat", "the ML-1M ratings.dat (UserID::MovieID::Rating::Timestamp)"
    )
    display = raw.display(member)
    # "::" needs pandas' slow python engine; as one-byte tabs the C parser reads it.
    data = raw.read_bytes(member).replace(b"::", b"\t")
    names = ("UserID", "MovieID", "Rating", "Timestamp")
    cols = read_columns(
        bytes_opener(data), display=display, sep="\t", names=names, wanted=_kinds(names)
    )
    result = _interactions(cols, display, names)
    members = [member]
    movies = raw.find("movies.dat")
    if movies is None:
        logger.warning("%s: no movies.dat next to ratings.dat; no items table saved", raw.path)
    else:
        members.append(movies)
        rows = _split_lines(raw.read_bytes(movies).decode("latin-1"), "::", 3, raw.display(movies))
        result.tables[ITEMS_TABLE] = _items_table(
            [int(r[0]) for r in rows], [r[1] for r in rows], [r[2].strip() for r in rows]
        )
    result.source_files = raw.hashes(members)
    return result


@SOURCES.register("ml-20m", public=True)
def load_ml_20m(opts: SourceOptions) -> Interactions:
    """ML-20M: ``ratings.csv`` (userId,movieId,rating,timestamp) and ``movies.csv``."""
    raw = _raw_release(opts, "ml-20m")
    member = raw.require("ratings.csv", "the ML-20M ratings.csv (userId,movieId,rating,timestamp)")
    display = raw.display(member)
    names = ("userId", "movieId", "rating", "timestamp")
    cols = read_columns(raw.opener(member), display=display, wanted=_kinds(names))
    result = _interactions(cols, display, names)
    members = [member]
    movies = raw.find("movies.csv")
    if movies is None:
        logger.warning("%s: no movies.csv next to ratings.csv; no items table saved", raw.path)
    else:
        members.append(movies)
        table = pd.read_csv(io.BytesIO(raw.read_bytes(movies)), dtype=str, keep_default_na=False)
        if not {"movieId", "title", "genres"} <= set(table.columns):
            raise UserInputError(
                f"{raw.display(movies)}: expected columns movieId,title,genres, found "
                f"{','.join(table.columns)}"
            )
        bad = ~table["movieId"].str.isdigit()
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise UserInputError(
                f"{raw.display(movies)}: line {i + 2}, column 'movieId': got "
                f"{table['movieId'].iloc[i]!r}, expected an integer"
            )
        genres = ["" if g == "(no genres listed)" else g for g in table["genres"].astype(str)]
        result.tables[ITEMS_TABLE] = _items_table(
            [int(x) for x in table["movieId"]], list(table["title"]), genres
        )
    result.source_files = raw.hashes(members)
    return result

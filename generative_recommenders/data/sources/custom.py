"""The user's own interactions: CSV, TSV or Parquet, chosen by the file's extension.

Item ids (strings or integers) are mapped to 1..n in sorted order of the original ids and the
mapping is saved, so results can be reported in the user's ids. User ids that are integers are
kept; string user ids are mapped to 1..n the same way. Users and items with fewer than
``--min_user_interactions`` / ``--min_item_interactions`` events are dropped in one pass (counts on
the raw file), and users left with fewer than ``--min_user_interactions`` events are dropped
when the store is built.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from generative_recommenders.data.raw_files import sha256_file
from generative_recommenders.data.readers import (
    CHUNK_ROWS,
    Column,
    IdColumn,
    ReadPlan,
    as_id_column,
    convert_column,
    plan_columns,
    read_columns,
)
from generative_recommenders.data.sources.base import Interactions, SourceOptions
from generative_recommenders.data.sources.remap import (
    dense_codes,
    frequency_mask,
    num_unique,
    remap,
)
from generative_recommenders.data.store import ITEM_ID_MAPPING, USER_ID_MAPPING
from generative_recommenders.errors import UserInputError
from generative_recommenders.registry import SOURCES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": ","}
# Files above this size are built in chunks (data/chunked.py) unless --chunk_rows says otherwise.
CHUNKED_ABOVE_BYTES = 1 << 30


def store_name(opts: SourceOptions) -> str:
    """``--name``, else the input file's stem; a safe directory name."""
    assert opts.input_file is not None
    return check_store_name(opts.name or opts.input_file.stem)


def check_store_name(name: str) -> str:
    """``name`` when it is a safe store directory name, else UserInputError naming --name."""
    if not _NAME.match(name) or name in ("downloads",):
        raise UserInputError(
            f"--name={name!r}: expected letters, digits, '.', '_' or '-' (a directory name)"
        )
    return name


def _wanted(opts: SourceOptions) -> tuple[dict[str, Column], tuple[str, ...], str]:
    wanted = {
        "user": Column(opts.user_col, "id"),
        "item": Column(opts.item_col, "id"),
        "timestamp": Column(opts.timestamp_col, "number"),
        "rating": Column(opts.rating_col, "float"),
    }
    optional = () if opts.rating_required else ("rating",)
    hint = "set --user_id_column, --item_id_column, --timestamp_column, --rating_column"
    return wanted, optional, hint


def _check_input(opts: SourceOptions) -> pathlib.Path:
    if opts.input_file is None:
        raise UserInputError("--dataset=csv needs --input_file=<your CSV, TSV or Parquet file>")
    path = opts.input_file
    if not path.is_file():
        raise UserInputError(f"{path}: no such file")
    if opts.min_user_interactions < 1 or opts.min_item_interactions < 1:
        raise UserInputError("--min_user_interactions and --min_item_interactions must be >= 1")
    if opts.chunk_rows < 0:
        raise UserInputError(f"--chunk_rows={opts.chunk_rows}: expected 0 (automatic) or more")
    return path


def _separator(path: pathlib.Path, opts: SourceOptions) -> str:
    suffix = path.suffix.lower()
    sep = opts.sep or _SEPARATORS.get(suffix)
    if sep is None:
        raise UserInputError(
            f"{path}: unknown extension {suffix!r}, expected .csv, .tsv or .parquet (or pass --sep)"
        )
    return sep


def use_chunks(opts: SourceOptions) -> bool:
    """Build in chunks: asked for (--chunk_rows > 0), or a file larger than CHUNKED_ABOVE_BYTES."""
    path = _check_input(opts)
    return opts.chunk_rows > 0 or path.stat().st_size > CHUNKED_ABOVE_BYTES


def chunk_plan(opts: SourceOptions) -> tuple[ReadPlan | ParquetPlan, dict[str, Column]]:
    """How to read the user's file chunk by chunk (data/chunked.py), and the wanted columns."""
    path = _check_input(opts)
    wanted, optional, hint = _wanted(opts)
    rows = opts.chunk_rows or CHUNK_ROWS
    if path.suffix.lower() == ".parquet":
        return ParquetPlan.open(path, wanted, optional, hint, rows), wanted
    plan = plan_columns(
        lambda: open(path, "rb"),
        display=str(path),
        sep=_separator(path, opts),
        wanted=wanted,
        optional=optional,
        hint=hint,
        chunk_rows=rows,
    )
    return plan, wanted


@SOURCES.register("csv")
def load_custom(opts: SourceOptions) -> Interactions:
    path = _check_input(opts)
    wanted, optional, hint = _wanted(opts)
    if path.suffix.lower() == ".parquet":
        cols = _read_parquet(path, wanted, optional, hint)
    else:
        cols = read_columns(
            lambda: open(path, "rb"),
            display=str(path),
            sep=_separator(path, opts),
            wanted=wanted,
            optional=optional,
            hint=hint,
        )
    users, items = as_id_column(cols["user"]), as_id_column(cols["item"])
    keep = frequency_mask(dense_codes(items), opts.min_item_interactions) & frequency_mask(
        dense_codes(users), opts.min_user_interactions
    )
    item_codes, item_mapping = remap(items, keep, "item")
    tables = {ITEM_ID_MAPPING: item_mapping}
    if users.labels is None:
        user_ids = users.values[keep]
    else:
        user_ids, tables[USER_ID_MAPPING] = remap(users, keep, "user")
    ratings = cols["rating"]
    return Interactions(
        users=user_ids,
        items=item_codes,
        timestamps=cols["timestamp"][keep],
        ratings=None if ratings is None else ratings[keep],
        min_user_interactions=opts.min_user_interactions,
        tables=tables,
        source_files={path.name: sha256_file(path)},
        stats={
            "raw_interactions": int(keep.size),
            "raw_users": num_unique(users),
            "interactions_dropped_by_frequency_filter": int(keep.size - keep.sum()),
            "columns": {role: c.name for role, c in wanted.items() if cols[role] is not None},
        },
        semantics=(
            f"item ids mapped to 1..n (item_id_mapping.csv); "
            f"{'integer user ids kept' if users.labels is None else 'user ids mapped to 1..n'}; "
            f"users < {opts.min_user_interactions} and items < {opts.min_item_interactions} "
            "interactions dropped (one pass, raw counts), then users left with < "
            f"{opts.min_user_interactions} events dropped"
        ),
    )


def _require_pyarrow(path: pathlib.Path) -> None:
    if importlib.util.find_spec("pyarrow") is None:
        raise UserInputError(
            f"{path}: reading .parquet needs the pyarrow package (pip install pyarrow), "
            "or convert the file to CSV"
        )


def _read_parquet(path, wanted, optional, hint) -> dict:
    _require_pyarrow(path)
    try:
        frame = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises many types for a bad file
        raise UserInputError(f"{path}: not a readable Parquet file ({type(e).__name__})") from None
    out = _convert_frame(frame, path, wanted, optional, hint, line_base=0)
    for role, value in out.items():
        if isinstance(value, tuple):
            codes, labels = value
            order = np.argsort(labels.astype(str), kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            out[role] = IdColumn(rank[codes].astype(np.int64), labels[order])
    if len(frame) == 0:
        raise UserInputError(f"{path}: no interaction rows")
    return out


def _convert_frame(frame, path, wanted, optional, hint, line_base: int) -> dict:
    """Validate a frame's columns: role -> array, (codes, labels) for string ids, or None."""
    out: dict = {}
    for role, col in wanted.items():
        if col.name not in frame.columns:
            if role in optional:
                out[role] = None
                continue
            raise UserInputError(
                f"{path}: missing column '{col.name}' for the {role} "
                f"(found: {', '.join(map(str, frame.columns))}); {hint}"
            )
        series = frame[col.name]
        if role == "timestamp" and pd.api.types.is_datetime64_any_dtype(series):
            series = series.astype("datetime64[s]").astype(np.int64)
        out[role] = convert_column(series, col, str(path), line_base=line_base)
    return out


@dataclass(frozen=True)
class ParquetPlan:
    """A Parquet file read in row batches (the chunked build's counterpart of ReadPlan)."""

    path: pathlib.Path
    wanted: dict[str, Column]
    optional: tuple[str, ...]
    hint: str
    chunk_rows: int
    present: dict[str, Column]

    @classmethod
    def open(cls, path, wanted, optional, hint, chunk_rows) -> ParquetPlan:
        _require_pyarrow(path)
        import pyarrow.parquet as pq

        try:
            names = set(pq.ParquetFile(path).schema_arrow.names)
        except Exception as e:  # pyarrow raises many types for a bad file
            raise UserInputError(
                f"{path}: not a readable Parquet file ({type(e).__name__})"
            ) from None
        present = {role: c for role, c in wanted.items() if c.name in names}
        for role, col in wanted.items():
            if role not in present and role not in optional:
                raise UserInputError(
                    f"{path}: missing column '{col.name}' for the {role} "
                    f"(found: {', '.join(sorted(names))}); {hint}"
                )
        return cls(path, wanted, tuple(optional), hint, chunk_rows, present)

    def with_strings(self, columns: set[str]) -> ParquetPlan:
        return self  # Parquet columns are typed: no chunk disagrees with another

    def chunks(self) -> Iterator[dict]:
        import pyarrow.parquet as pq

        columns = [c.name for c in self.present.values()]
        rows = 0
        for batch in pq.ParquetFile(self.path).iter_batches(self.chunk_rows, columns=columns):
            frame = batch.to_pandas()
            if len(frame) == 0:
                continue
            out = _convert_frame(frame, self.path, self.present, (), self.hint, line_base=rows)
            rows += len(frame)
            yield out
        if rows == 0:
            raise UserInputError(f"{self.path}: no interaction rows")

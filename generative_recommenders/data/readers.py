"""Reading delimited interaction files into validated numpy columns.

Reads in chunks with pandas' C parser (inferred dtypes: integer ids parse fast) behind a tqdm
bar, and turns every way a file can be wrong into one UserInputError line that names the file,
the line or column and what was expected.
"""

from __future__ import annotations

import csv
import dataclasses
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
import pandas as pd
from tqdm import tqdm

from generative_recommenders.errors import UserInputError

CHUNK_ROWS = 2_000_000

# Column kinds:
#   "int"    integer (ids of MovieLens): int64
#   "number" int or float (timestamps): int64 when integral text, else float64
#   "float"  float32 (ratings)
#   "id"     integer or string ids: IdColumn
#   "str_id" string ids even when they look numeric (leading zeros matter): IdColumn
KINDS = ("int", "number", "float", "id", "str_id")
_EXPECTED = {
    "int": "an integer",
    "number": "a number",
    "float": "a number",
    "id": "an id",
    "str_id": "an id",
}


@dataclass
class IdColumn:
    """An id column: raw int64 ids, or 0-based codes into sorted string labels.

    Attributes:
        values: [T] int64 raw ids when ``labels`` is None, else codes into ``labels``.
        labels: [K] object array of str, sorted ascending, or None for integer ids.
    """

    values: np.ndarray
    labels: np.ndarray | None

    def factorize(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes [T] int64 0-based in sorted-original order, originals [K] as str)."""
        if self.labels is None:
            codes, uniques = pd.factorize(self.values, sort=True)
            return codes.astype(np.int64), uniques.astype(str).astype(object)
        codes, uniques = pd.factorize(self.values, sort=True)
        return codes.astype(np.int64), self.labels[uniques]


@dataclass(frozen=True)
class Column:
    """One column to read: the file's column name and its kind (see KINDS)."""

    name: str
    kind: str


Opener = Callable[[], IO[bytes]]


@dataclass(frozen=True)
class ReadPlan:
    """How to read a delimited file: which columns are present and how each is parsed."""

    open_fn: Opener
    display: str
    sep: str
    names: Sequence[str] | None
    present: dict[str, Column]
    forced_str: frozenset[str]
    header_lines: int
    encoding: str
    quoting: int
    chunk_rows: int = 0  # 0: CHUNK_ROWS

    def with_strings(self, columns: set[str]) -> ReadPlan:
        """The same plan with ``columns`` read as strings."""
        return dataclasses.replace(self, forced_str=self.forced_str | frozenset(columns))

    def chunks(self) -> Iterator[dict[str, np.ndarray | tuple]]:
        """The file's validated columns, one chunk of ``chunk_rows`` rows at a time."""
        return iter_chunks(self)


def plan_columns(
    open_fn: Opener,
    *,
    display: str,
    wanted: dict[str, Column],
    sep: str = ",",
    names: Sequence[str] | None = None,
    optional: Sequence[str] = (),
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
    hint: str = "",
    chunk_rows: int = 0,
) -> ReadPlan:
    """Check the header for the ``wanted`` columns (see ``read_columns``) and plan the read."""
    for col in wanted.values():
        assert col.kind in KINDS, col.kind
    header_lines = 0 if names is not None else 1
    if names is None:
        found = _read_header(open_fn, display, sep, encoding, quoting, wanted)
    else:
        found = list(names)
    present: dict[str, Column] = {}
    for role, col in wanted.items():
        if col.name in found:
            present[role] = col
        elif role not in optional:
            where = f"found: {', '.join(map(str, found))}" if names is None else "headerless"
            extra = f"; {hint}" if hint else ""
            raise UserInputError(
                f"{display}: missing column '{col.name}' for the {role} ({where}){extra}"
            )
    forced_str = frozenset(c.name for c in present.values() if c.kind == "str_id")
    return ReadPlan(
        open_fn, display, sep, names, present, forced_str, header_lines, encoding, quoting,
        chunk_rows,
    )  # fmt: skip


def read_columns(
    open_fn: Opener,
    *,
    display: str,
    wanted: dict[str, Column],
    sep: str = ",",
    names: Sequence[str] | None = None,
    optional: Sequence[str] = (),
    encoding: str = "utf-8",
    quoting: int = csv.QUOTE_MINIMAL,
    hint: str = "",
) -> dict[str, np.ndarray | IdColumn | None]:
    """Read the ``wanted`` columns (role -> Column) of a delimited file.

    Args:
        open_fn: returns a fresh binary handle on the file (called once or twice).
        display: how the file is named in messages (a path, or "archive.zip:member").
        names: the field names of a headerless file; None when the first line is a header.
        optional: roles that may be absent from the header (their value is then None).
        hint: appended to a missing-column message, e.g. "set --timestamp_col".

    Returns:
        role -> [T] int64 / float32 / float64 array, IdColumn, or None for an absent optional.
    """
    plan = plan_columns(
        open_fn,
        display=display,
        wanted=wanted,
        sep=sep,
        names=names,
        optional=optional,
        encoding=encoding,
        quoting=quoting,
        hint=hint,
    )
    result = _read_chunks(plan)
    retry = {plan.present[role].name for role, v in result.items() if isinstance(v, _MixedIds)}
    if retry:
        # Some chunks parsed as integers and others as strings: integer parsing may have
        # dropped leading zeros, so read those columns again as strings throughout.
        result = _read_chunks(plan.with_strings(retry))
    out: dict[str, np.ndarray | IdColumn | None] = {role: None for role in wanted}
    out.update(result)
    return out


class _MixedIds:
    """Marker: an id column whose chunks disagreed on integer vs string."""


def _read_header(
    open_fn: Opener,
    display: str,
    sep: str,
    encoding: str,
    quoting: int,
    wanted: dict[str, Column],
) -> list[str]:
    expected = ",".join(c.name for c in wanted.values())
    try:
        with open_fn() as f:
            header = pd.read_csv(
                f, sep=sep, nrows=0, encoding=encoding, quoting=quoting, engine="c"
            )
    except pd.errors.EmptyDataError:
        raise UserInputError(
            f"{display}: the file is empty, expected a header line with columns {expected}"
        ) from None
    except UnicodeDecodeError:
        raise UserInputError(f"{display}: line 1 is not valid {encoding} text") from None
    except pd.errors.ParserError as e:
        raise UserInputError(f"{display}: malformed header ({_first_line(e)})") from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise UserInputError(f"{display}: truncated or corrupt archive ({e})") from None
    return [str(c) for c in header.columns]


def iter_chunks(plan: ReadPlan) -> Iterator[dict[str, np.ndarray | tuple]]:
    """Yield each chunk's validated columns: role -> [C] array, or (codes, labels) for
    string ids (per-chunk labels, in first-seen order). At least one chunk or UserInputError."""
    usecols = [c.name for c in plan.present.values()]
    dtype = {name: str for name in plan.forced_str}
    start = 0
    display = plan.display
    try:
        with plan.open_fn() as f:
            reader = pd.read_csv(
                f,
                sep=plan.sep,
                header=None if plan.names is not None else 0,
                names=list(plan.names) if plan.names is not None else None,
                index_col=False,
                # Headerless files name every field, so a line with extra fields is an error;
                # with a header, only the wanted columns are parsed.
                usecols=usecols if plan.names is None else None,
                dtype=dtype or None,
                keep_default_na=False,
                na_values=[""],
                encoding=plan.encoding,
                quoting=plan.quoting,
                engine="c",
                chunksize=plan.chunk_rows or CHUNK_ROWS,
            )
            with tqdm(desc=f"reading {_short(display)}", unit=" rows", unit_scale=True) as bar:
                for chunk in reader:
                    if len(chunk) == 0:
                        continue
                    yield {
                        role: convert_column(
                            chunk[col.name], col, display, start + plan.header_lines
                        )
                        for role, col in plan.present.items()
                    }
                    start += len(chunk)
                    bar.update(len(chunk))
    except pd.errors.EmptyDataError:
        raise UserInputError(f"{display}: the file is empty, expected interaction lines") from None
    except pd.errors.ParserError as e:
        raise UserInputError(f"{display}: malformed line ({_first_line(e)})") from None
    except UnicodeDecodeError:
        raise UserInputError(
            f"{display}: not valid {plan.encoding} text after line {start + plan.header_lines}"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise UserInputError(f"{display}: truncated or corrupt archive ({e})") from None
    if start == 0:
        raise UserInputError(f"{display}: no interaction lines after the header")


def _read_chunks(plan: ReadPlan) -> dict[str, np.ndarray | IdColumn | _MixedIds]:
    parts: dict[str, list] = {role: [] for role in plan.present}
    for chunk in iter_chunks(plan):
        for role, value in chunk.items():
            parts[role].append(value)
    return {role: _combine(chunks) for role, chunks in parts.items()}


def convert_column(series: pd.Series, col: Column, display: str, line_base: int):
    """Validate one chunk's column; line_base + i + 1 is the file line of the chunk's row i."""
    values = series.to_numpy()
    kind = col.kind

    def fail(i: int, what: str) -> UserInputError:
        return UserInputError(
            f"{display}: line {line_base + i + 1}, column '{col.name}': {what}, "
            f"expected {_EXPECTED[kind]}"
        )

    if kind in ("id", "str_id"):
        if values.dtype.kind in "iu":
            return values.astype(np.int64, copy=False)
        if values.dtype.kind == "f" or kind == "str_id" or values.dtype == object:
            missing = pd.isna(series).to_numpy()
            if missing.any():
                raise fail(int(np.argmax(missing)), "empty value")
        if values.dtype.kind == "f":
            frac = values != np.floor(values)
            if frac.any():
                i = int(np.argmax(frac))
                raise fail(i, f"got {values[i]!r}")
            return values.astype(np.int64)
        codes, uniques = pd.factorize(values.astype(str), sort=False)
        return (codes.astype(np.int64), np.asarray(uniques, dtype=object))
    if values.dtype == object:
        numeric = pd.to_numeric(series, errors="coerce").to_numpy()
        bad = np.isnan(numeric.astype(np.float64))
        i = int(np.argmax(bad))
        raw = values[i]
        raise fail(i, "empty value" if raw is None or raw != raw else f"got {str(raw)!r}")
    if values.dtype.kind == "b":
        raise fail(0, f"got {values[0]!r}")
    if values.dtype.kind == "f":
        missing = np.isnan(values)
        if missing.any():
            raise fail(int(np.argmax(missing)), "empty value")
    if kind == "int":
        if values.dtype.kind == "f":
            frac = values != np.floor(values)
            if frac.any():
                i = int(np.argmax(frac))
                raise fail(i, f"got {values[i]!r}")
        return values.astype(np.int64, copy=False)
    if kind == "float":
        return values.astype(np.float32)
    # "number": keep integers exact, floats as float64.
    if values.dtype.kind in "iu":
        return values.astype(np.int64, copy=False)
    return values.astype(np.float64, copy=False)


def _combine(chunks: list):
    """Concatenate chunk results; merge per-chunk string codes into sorted global labels."""
    is_str = [isinstance(c, tuple) for c in chunks]
    if not any(is_str):
        arrays = [np.asarray(c) for c in chunks]
        if len({a.dtype for a in arrays}) > 1:
            arrays = [a.astype(np.float64) for a in arrays]
        return np.concatenate(arrays)
    if not all(is_str):
        return _MixedIds()
    all_labels = np.concatenate([labels for _, labels in chunks])
    global_codes, labels = pd.factorize(all_labels, sort=True)
    values = np.empty(sum(len(codes) for codes, _ in chunks), dtype=np.int64)
    pos = 0
    label_pos = 0
    for codes, chunk_labels in chunks:
        remap = global_codes[label_pos : label_pos + len(chunk_labels)].astype(np.int64)
        values[pos : pos + len(codes)] = remap[codes]
        pos += len(codes)
        label_pos += len(chunk_labels)
    return IdColumn(values, np.asarray(labels, dtype=object))


def as_id_column(value) -> IdColumn:
    """Wrap a raw int64 array (integer ids) as an IdColumn; pass an IdColumn through."""
    if isinstance(value, IdColumn):
        return value
    return IdColumn(np.asarray(value, dtype=np.int64), None)


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _short(display: str) -> str:
    return display if len(display) <= 40 else "…" + display[-39:]

"""The sequence store: one directory of jagged ``.npy`` arrays plus ``meta.json`` per dataset.

Layout of ``<data_dir>/<dataset name>/``::

    offsets.npy      int64 [U + 1]   user u's events are item_ids[offsets[u]:offsets[u + 1]]
    user_ids.npy     int64 [U]       the dataset's own user ids (or the 1..n codes of a mapping)
    item_ids.npy     int64 [T]       item ids, 0 never occurs (padding)
    ratings.npy      float32 [T]     0 everywhere when the source has no ratings
    timestamps.npy   int64 [T]       seconds, non-decreasing within each user
    item_counts.npy  int64 [max_item_id + 1]  interactions per item id (popularity)
    meta.json        counts, max item id, source hashes, format version, target fingerprint
    *.csv            optional tables (items.csv, user_id_mapping.csv, item_id_mapping.csv)

Arrays are opened with ``mmap_mode="r"`` so stores larger than memory stream from disk. The
training and evaluation loaders read each user's slices with ``os.preadv``
(:meth:`SequenceStore.read`) instead of slicing the maps: the pages stay in the OS page cache,
shared by every worker and evicted under memory pressure, but are never mapped into a process, so
a process's resident memory does not grow with the interactions it has read (sliced maps kept
every touched page, up to 2 MiB per touch, in its RSS: ~0.1-0.2 GiB per batch at 37 M
interactions). The store is written to a temporary sibling directory and renamed,
so an interrupted run never leaves a half store behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import pandas as pd

from generative_recommenders.atomic import atomic_directory
from generative_recommenders.data.splits import FINGERPRINT_DEFINITION, fingerprint_triples
from generative_recommenders.errors import UserInputError

FORMAT_VERSION = 1
AMAZON_2023_PREFIX = "amazon-2023-"  # stores of the amazon-2023 source: amazon-2023-<Category>

_ARRAYS: dict[str, np.dtype] = {
    "offsets": np.dtype(np.int64),
    "user_ids": np.dtype(np.int64),
    "item_ids": np.dtype(np.int64),
    "ratings": np.dtype(np.float32),
    "timestamps": np.dtype(np.int64),
    "item_counts": np.dtype(np.int64),
}
ITEMS_TABLE = "items"
USER_ID_MAPPING = "user_id_mapping"
ITEM_ID_MAPPING = "item_id_mapping"


def store_path(data_dir: str | os.PathLike, dataset_name: str) -> pathlib.Path:
    """Directory of the store for ``dataset_name`` under ``data_dir``."""
    return pathlib.Path(data_dir) / dataset_name


def create_command(data_dir: str | os.PathLike, dataset_name: str) -> str:
    """The command line that (re)creates the store for ``dataset_name``."""
    data_dir = str(data_dir)
    if not data_dir.endswith("/"):
        data_dir += "/"
    # Imported here: the sources import this module (for the store's file names).
    from generative_recommenders.data.sources import public_datasets

    if dataset_name in public_datasets():
        return f"python preprocess_public_data.py --dataset {dataset_name} --data_dir {data_dir}"
    if dataset_name.startswith(AMAZON_2023_PREFIX):
        category = dataset_name[len(AMAZON_2023_PREFIX) :]
        return (
            f"python preprocess_public_data.py --dataset amazon-2023 --category {category} "
            f"--data_dir {data_dir}"
        )
    return (
        f"python preprocess_public_data.py --dataset csv --name {dataset_name} "
        f"--input_file <your file> --data_dir {data_dir}"
    )


def write_store(
    out_dir: str | os.PathLike,
    *,
    user_ids: np.ndarray,
    offsets: np.ndarray,
    item_ids: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    meta: dict[str, Any],
    tables: dict[str, pd.DataFrame] | None = None,
) -> pathlib.Path:
    """Write a complete store to ``out_dir`` atomically and return its path.

    Everything goes to a temporary sibling directory first; only when every file is written is
    it renamed into place (an older store at ``out_dir`` is replaced only then).

    Args:
        user_ids: [U] int64. offsets: [U + 1] int64 with offsets[0] = 0, offsets[-1] = T.
        item_ids: [T] int64 (>= 1). ratings: [T] float32. timestamps: [T] int64 seconds.
        meta: extra metadata; counts, max item id and the format version are added here.
        tables: name -> DataFrame, written as ``<name>.csv`` (e.g. "items", "item_id_mapping").
    """
    out = pathlib.Path(out_dir)
    arrays = {
        "offsets": np.ascontiguousarray(offsets, dtype=np.int64),
        "user_ids": np.ascontiguousarray(user_ids, dtype=np.int64),
        "item_ids": np.ascontiguousarray(item_ids, dtype=np.int64),
        "ratings": np.ascontiguousarray(ratings, dtype=np.float32),
        "timestamps": np.ascontiguousarray(timestamps, dtype=np.int64),
    }
    _check_consistent(arrays, where=str(out))
    item_ids_arr = arrays["item_ids"]
    max_item_id = int(item_ids_arr.max()) if item_ids_arr.size else 0
    arrays["item_counts"] = np.bincount(item_ids_arr, minlength=max_item_id + 1).astype(np.int64)
    lengths = np.diff(arrays["offsets"])
    full_meta = dict(meta)
    full_meta.update(
        {
            "format_version": FORMAT_VERSION,
            "num_users": int(lengths.size),
            "num_interactions": int(item_ids_arr.size),
            "num_items": int(np.count_nonzero(arrays["item_counts"])),
            "max_item_id": max_item_id,
            "sequence_length": {
                "min": int(lengths.min()) if lengths.size else 0,
                "mean": float(lengths.mean()) if lengths.size else 0.0,
                "max": int(lengths.max()) if lengths.size else 0,
            },
            "tables": sorted(tables) if tables else [],
        }
    )

    with atomic_directory(out) as tmp:
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        for name, table in (tables or {}).items():
            table.to_csv(tmp / f"{name}.csv", index=False)
        # meta.json last: its presence marks a complete directory.
        with open(tmp / "meta.json", "w", encoding="utf-8") as f:
            json.dump(full_meta, f, indent=2, sort_keys=True)
    return out


class _NpyAppender:
    """A 1-d ``.npy`` file written chunk by chunk; its length goes into the header at the end.

    The header of a 1-d array of any length below 10^18 is 128 bytes (numpy pads it to a
    multiple of 64), so the data starts at byte 128 and the header is written last.
    """

    HEADER_BYTES = 128

    def __init__(self, path: pathlib.Path, dtype: np.dtype):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.count = 0
        self._file: IO[bytes] = open(path, "wb")
        self._file.write(b"\0" * self.HEADER_BYTES)

    def append(self, values: np.ndarray) -> None:
        chunk = np.ascontiguousarray(values, dtype=self.dtype)
        self._file.write(memoryview(chunk).cast("B"))
        self.count += int(chunk.shape[0])

    def close(self) -> None:
        self._file.seek(0)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.count,),
        }
        np.lib.format.write_array_header_1_0(self._file, header)
        assert self._file.tell() == self.HEADER_BYTES, self._file.tell()
        self._file.close()

    def abort(self) -> None:
        self._file.close()


class StoreWriter:
    """Builds a store chunk by chunk: users arrive in store order, each with all its events.

    Memory stays at one chunk plus the item counts ([max item id + 1] int64): the per-event
    and per-user arrays stream to disk, and the target fingerprint is hashed as users arrive.
    Use through ``open_store_writer``, which writes to a temporary folder and renames it.
    """

    def __init__(self, folder: pathlib.Path, num_item_ids: int):
        """``num_item_ids``: an upper bound on max item id + 1 (item ids are < it)."""
        self.folder = folder
        self._files = {
            name: _NpyAppender(folder / f"{name}.npy", _ARRAYS[name])
            for name in ("offsets", "user_ids", "item_ids", "ratings", "timestamps")
        }
        self._files["offsets"].append(np.zeros(1, dtype=np.int64))
        self._item_counts = np.zeros(int(num_item_ids), dtype=np.int64)
        self._total = 0
        self._fingerprint = hashlib.sha256()
        self._length_min: int | None = None
        self._length_max = 0
        self._num_users = 0
        self.extra_files: list[str] = []

    def append(
        self,
        user_ids: np.ndarray,
        lengths: np.ndarray,
        item_ids: np.ndarray,
        ratings: np.ndarray,
        timestamps: np.ndarray,
    ) -> None:
        """Add whole users: user_ids, lengths [u] int64 (>= 1); the rest [sum(lengths)],
        each user's events contiguous and in time order, users in the order given."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.size == 0:
            return
        assert int(lengths.min()) >= 1 and int(lengths.sum()) == item_ids.shape[0]
        local = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=local[1:])
        self._files["offsets"].append(local[1:] + self._total)
        self._files["user_ids"].append(user_ids)
        self._files["item_ids"].append(item_ids)
        self._files["ratings"].append(ratings)
        self._files["timestamps"].append(timestamps)
        self._item_counts += np.bincount(item_ids, minlength=self._item_counts.shape[0])
        self._fingerprint.update(fingerprint_triples(user_ids, local, item_ids).tobytes())
        self._total += int(local[-1])
        self._num_users += int(lengths.size)
        low, high = int(lengths.min()), int(lengths.max())
        self._length_min = low if self._length_min is None else min(self._length_min, low)
        self._length_max = max(self._length_max, high)

    @property
    def num_interactions(self) -> int:
        return self._total

    @property
    def num_users(self) -> int:
        return self._num_users

    def finish(
        self, meta: dict[str, Any], tables: dict[str, pd.DataFrame] | None = None
    ) -> dict[str, Any]:
        """Close the arrays, write item_counts.npy, the tables (``<name>.csv``) and meta.json;
        returns the full meta."""
        for appender in self._files.values():
            appender.close()
        nonzero = np.flatnonzero(self._item_counts)
        max_item_id = int(nonzero[-1]) if nonzero.size else 0
        item_counts = self._item_counts[: max_item_id + 1]
        np.save(self.folder / "item_counts.npy", item_counts, allow_pickle=False)
        for name, table in (tables or {}).items():
            table.to_csv(self.folder / f"{name}.csv", index=False)
        full_meta = dict(meta)
        full_meta.update(
            {
                "format_version": FORMAT_VERSION,
                "num_users": self._num_users,
                "num_interactions": self._total,
                "num_items": int(nonzero.size),
                "max_item_id": max_item_id,
                "sequence_length": {
                    "min": self._length_min or 0,
                    "mean": self._total / self._num_users if self._num_users else 0.0,
                    "max": self._length_max,
                },
                "tables": sorted(tables) if tables else [],
                "target_fingerprint": self._fingerprint.hexdigest(),
                "fingerprint_definition": FINGERPRINT_DEFINITION,
            }
        )
        with open(self.folder / "meta.json", "w", encoding="utf-8") as f:
            json.dump(full_meta, f, indent=2, sort_keys=True)
        return full_meta

    def abort(self) -> None:
        for appender in self._files.values():
            appender.abort()


@contextmanager
def open_store_writer(out_dir: str | os.PathLike, num_item_ids: int) -> Iterator[StoreWriter]:
    """A StoreWriter on a temporary sibling of ``out_dir``, renamed into place on success.

    The body must call ``finish``; on an exception nothing is left behind.
    """
    with atomic_directory(pathlib.Path(out_dir)) as tmp:
        writer = StoreWriter(tmp, num_item_ids)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        if not (tmp / "meta.json").is_file():
            raise RuntimeError("open_store_writer: the body did not call finish()")


def _check_consistent(arrays: dict[str, np.ndarray], where: str) -> None:
    """Raise UserInputError unless the jagged arrays agree in length and offsets are monotone."""
    offsets = arrays["offsets"]
    num_users = arrays["user_ids"].shape[0]
    total = arrays["item_ids"].shape[0]
    if offsets.ndim != 1 or offsets.shape[0] != num_users + 1:
        raise UserInputError(
            f"{where}: offsets has {offsets.shape[0]} entries, expected num_users + 1 = "
            f"{num_users + 1}"
        )
    for name in ("ratings", "timestamps"):
        if arrays[name].shape[0] != total:
            raise UserInputError(
                f"{where}: {name} has {arrays[name].shape[0]} entries, expected {total} "
                "(one per interaction, like item_ids)"
            )
    if int(offsets[0]) != 0 or int(offsets[-1]) != total:
        raise UserInputError(
            f"{where}: offsets must start at 0 and end at {total}, got {int(offsets[0])}.."
            f"{int(offsets[-1])}"
        )
    if offsets.shape[0] > 1 and bool(np.any(np.diff(offsets) < 0)):
        raise UserInputError(f"{where}: offsets must be non-decreasing")


class _ArrayFile:
    """Positional reads of slices of one 1-d ``.npy`` file (copies; no memory map)."""

    def __init__(self, path: pathlib.Path, dtype: np.dtype, data_offset: int, length: int):
        self.path, self.dtype = path, np.dtype(dtype)
        self.data_offset, self.length = int(data_offset), int(length)
        self._fd: int | None = None

    def read(self, start: int, stop: int) -> np.ndarray:
        """A fresh array of elements ``start:stop`` (0 <= start <= stop <= length)."""
        out = np.empty(max(stop - start, 0), dtype=self.dtype)
        return self.read_into(start, out)

    def read_into(self, start: int, out: np.ndarray) -> np.ndarray:
        """Elements ``start : start + len(out)`` into the contiguous 1-d ``out``; returns it."""
        stop = start + out.shape[0]
        if not 0 <= start <= stop <= self.length:
            raise IndexError(f"{self.path}: slice {start}:{stop} outside 0:{self.length}")
        buffer = memoryview(out).cast("B")
        position = self.data_offset + start * self.dtype.itemsize
        fd = self._fd if self._fd is not None else self._descriptor()
        done = os.preadv(fd, [buffer], position)
        while done < len(buffer):  # a short read: only near the end of a file being replaced
            count = os.preadv(self._descriptor(), [buffer[done:]], position + done)
            if count == 0:
                raise UserInputError(f"{self.path}: file ends before element {stop}")
            done += count
        return out

    def _descriptor(self) -> int:
        # Opened on first read (in the process that reads); a forked worker shares it safely,
        # since positional reads do not move a file offset.
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            weakref.finalize(self, os.close, self._fd)
        return self._fd


class SequenceStore:
    """Read-only view of a store directory; arrays are memory-mapped.

    Attributes:
        offsets: [U + 1] int64. user_ids: [U] int64. item_ids: [T] int64.
        ratings: [T] float32. timestamps: [T] int64. meta: the parsed meta.json.
    """

    READABLE = ("item_ids", "ratings", "timestamps")  # the per-interaction arrays

    def __init__(
        self,
        path: pathlib.Path,
        arrays: dict[str, np.ndarray],
        meta: dict[str, Any],
        data_offsets: dict[str, int] | None = None,
    ):
        self.path = path
        self.meta = meta
        self._files = {
            name: _ArrayFile(path / f"{name}.npy", arrays[name].dtype, offset, len(arrays[name]))
            for name, offset in (data_offsets or {}).items()
        }
        self.offsets: np.ndarray = arrays["offsets"]
        self.user_ids: np.ndarray = arrays["user_ids"]
        self.item_ids: np.ndarray = arrays["item_ids"]
        self.ratings: np.ndarray = arrays["ratings"]
        self.timestamps: np.ndarray = arrays["timestamps"]
        self._item_counts: np.ndarray = arrays["item_counts"]

    @classmethod
    def open(cls, data_dir: str | os.PathLike, dataset_name: str) -> SequenceStore:
        """Open and validate ``<data_dir>/<dataset_name>/``; UserInputError when absent or bad."""
        path = store_path(data_dir, dataset_name)
        fix = f"run `{create_command(data_dir, dataset_name)}`"
        meta_file = path / "meta.json"
        if not meta_file.is_file():
            raise UserInputError(f"no sequence store at {path}/: {fix}")
        try:
            with open(meta_file, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise UserInputError(f"{meta_file}: not valid JSON ({e}); {fix}") from None
        if not isinstance(meta, dict):
            raise UserInputError(f"{meta_file}: expected a JSON object; {fix}")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise UserInputError(
                f"{meta_file}: format_version is {version!r}, expected {FORMAT_VERSION}; "
                f"re-create the store: {fix}"
            )
        arrays: dict[str, np.ndarray] = {}
        data_offsets: dict[str, int] = {}
        for name, dtype in _ARRAYS.items():
            file = path / f"{name}.npy"
            try:
                arr = np.load(file, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise UserInputError(f"{file}: missing array file; {fix}") from None
            except (OSError, ValueError) as e:
                raise UserInputError(f"{file}: unreadable .npy array ({e}); {fix}") from None
            if arr.dtype != dtype or arr.ndim != 1:
                raise UserInputError(
                    f"{file}: {arr.dtype} array of {arr.ndim} dims, expected 1-d {dtype}; {fix}"
                )
            # A plain ndarray view of the mapping: slicing np.memmap subclasses is slower.
            arrays[name] = np.asarray(arr)
            if name in cls.READABLE and hasattr(os, "preadv"):  # else (Windows): map slices
                data_offsets[name] = int(arr.offset)
        try:
            _check_consistent(arrays, where=str(path))
        except UserInputError as e:
            raise UserInputError(f"{e}; {fix}") from None
        expected = {
            "num_users": arrays["user_ids"].shape[0],
            "num_interactions": arrays["item_ids"].shape[0],
            "max_item_id": arrays["item_counts"].shape[0] - 1,
        }
        for key, value in expected.items():
            if meta.get(key) != value:
                raise UserInputError(
                    f"{meta_file}: {key} is {meta.get(key)!r} but the arrays hold {value}; {fix}"
                )
        return cls(path, arrays, meta, data_offsets)

    def __reduce__(self):
        # Pickle by path (e.g. to spawned data-loader workers): the arrays are re-mapped on the
        # other side instead of being copied into the pickle.
        return (SequenceStore.open, (str(self.path.parent), self.path.name))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def num_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def num_interactions(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def max_item_id(self) -> int:
        return int(self._item_counts.shape[0] - 1)

    @property
    def has_ratings(self) -> bool:
        return bool(self.meta.get("has_ratings", False))

    def lengths(self) -> np.ndarray:
        """[U] int64 number of events per user."""
        return np.diff(self.offsets)

    def item_counts(self) -> np.ndarray:
        """[max_item_id + 1] int64 interactions per item id (index 0, padding, is 0)."""
        return np.array(self._item_counts)

    def catalogue_item_ids(self) -> np.ndarray:
        """Sorted unique item ids that occur in the store, int64."""
        return np.flatnonzero(self._item_counts).astype(np.int64)

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """``<name>[start:stop]`` for a per-interaction array (:data:`READABLE`), as a fresh
        array read from the file: the pages are not mapped into this process (module doc)."""
        file = self._files.get(name)
        if file is None:  # a store built in memory (no files): slice the array
            return np.array(getattr(self, name)[start:stop])
        return file.read(start, stop)

    def read_into(self, name: str, start: int, out: np.ndarray) -> np.ndarray:
        """:meth:`read` of ``len(out)`` elements from ``start`` into the contiguous 1-d ``out``
        (of the array's dtype); returns ``out``."""
        file = self._files.get(name)
        if file is None:
            out[:] = getattr(self, name)[start : start + out.shape[0]]
            return out
        return file.read_into(start, out)

    def history(self, row: int) -> np.ndarray:
        """All item ids of store row ``row``, oldest first (a read-only view)."""
        return self.item_ids[int(self.offsets[row]) : int(self.offsets[row + 1])]

    def _table(self, name: str) -> pd.DataFrame | None:
        file = self.path / f"{name}.csv"
        if not file.is_file():
            return None
        return pd.read_csv(file, keep_default_na=False, na_values=[""])

    def items_table(self) -> pd.DataFrame | None:
        """item_id, title, genres ("|"-separated), year when the source had them, else None."""
        return self._table(ITEMS_TABLE)

    def user_id_mapping(self) -> pd.DataFrame | None:
        """Columns original (str), user_id (int64 code) for sources with remapped users."""
        return self._read_mapping(USER_ID_MAPPING)

    def item_id_mapping(self) -> pd.DataFrame | None:
        """Columns original (str), item_id (int64 code) for sources with remapped items."""
        return self._read_mapping(ITEM_ID_MAPPING)

    def _read_mapping(self, name: str) -> pd.DataFrame | None:
        file = self.path / f"{name}.csv"
        if not file.is_file():
            return None
        return pd.read_csv(file, dtype={"original": str}, keep_default_na=False)

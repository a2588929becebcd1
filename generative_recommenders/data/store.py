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

Arrays are opened with ``mmap_mode="r"`` so data-loader workers share pages and stores larger
than memory stream from disk. The store is written to a temporary sibling directory and renamed,
so an interrupted run never leaves a half store behind.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np
import pandas as pd

from generative_recommenders.atomic import atomic_directory
from generative_recommenders.errors import UserInputError

FORMAT_VERSION = 1
PUBLIC_DATASETS = ("ml-100k", "ml-1m", "ml-20m", "amzn-books")
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
    if dataset_name in PUBLIC_DATASETS:
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


class SequenceStore:
    """Read-only view of a store directory; arrays are memory-mapped.

    Attributes:
        offsets: [U + 1] int64. user_ids: [U] int64. item_ids: [T] int64.
        ratings: [T] float32. timestamps: [T] int64. meta: the parsed meta.json.
    """

    def __init__(self, path: pathlib.Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]):
        self.path = path
        self.meta = meta
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
        return cls(path, arrays, meta)

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

"""What every source hands to the store builder, and the options sources read."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class SourceOptions:
    """Everything a source may need; sources ignore what does not apply to them.

    Attributes:
        data_dir: where stores (and ``downloads/``) live.
        input_file: a local copy of the raw archive/file, or the user's file for ``csv``.
        name: the store name for ``csv``.
        user_col, item_col, timestamp_col, rating_col: column names for ``csv``.
        rating_required: the user passed ``--rating_column`` explicitly, so its absence is an error.
        sep: field separator for ``csv`` (None: by extension, "," or tab for .tsv).
        min_user_interactions, min_item_interactions: filters for ``csv``.
        category: the Amazon Reviews 2023 category (``amazon-2023``), e.g. "Video_Games".
        k_core: ``amazon-2023``'s k-core filter (None: the source's default, 5).
        meta_file: ``amazon-2023``'s item metadata file (titles for ``items.csv``).
        chunk_rows: ``csv``: build in chunks of this many rows (0: only files above 1 GiB).
    """

    data_dir: pathlib.Path
    input_file: pathlib.Path | None = None
    name: str | None = None
    user_col: str = "user_id"
    item_col: str = "item_id"
    timestamp_col: str = "timestamp"
    rating_col: str = "rating"
    rating_required: bool = False
    sep: str | None = None
    min_user_interactions: int = 2
    min_item_interactions: int = 1
    category: str | None = None
    k_core: int | None = None
    meta_file: pathlib.Path | None = None
    chunk_rows: int = 0

    @property
    def downloads(self) -> pathlib.Path:
        return self.data_dir / "downloads"


@dataclass
class Interactions:
    """Raw events in file order, ids already final.

    Attributes:
        users: [T] int64 user ids (the dataset's own integers, or 1..n codes of a mapping).
        items: [T] int64 item ids >= 1 (0 is padding).
        timestamps: [T] int64 seconds, or float64 when the file has fractional times.
        ratings: [T] float32, or None when the source has no ratings.
        min_user_interactions: users with fewer events are dropped when the store is built.
        tables: extra tables for the store (items, id mappings).
        source_files: file name -> sha256 of what was read.
        stats: counts for the summary and meta.json (e.g. items dropped by a filter).
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None
    min_user_interactions: int
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    source_files: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    semantics: str = ""

"""Frequency filters and id remapping shared by the Amazon and custom sources."""

from __future__ import annotations

import numpy as np
import pandas as pd

from generative_recommenders.data.readers import IdColumn


def frequency_mask(codes: np.ndarray, min_count: int) -> np.ndarray:
    """[T] bool: events whose code occurs at least ``min_count`` times in ``codes``."""
    if min_count <= 1:
        return np.ones(codes.shape[0], dtype=bool)
    counts = np.bincount(codes)
    return counts[codes] >= min_count


def remap(column: IdColumn, keep: np.ndarray, kind: str) -> tuple[np.ndarray, pd.DataFrame]:
    """Codes 1..n (in sorted original order) for the kept events, and the mapping table.

    Args:
        column: the id column of all events. keep: [T] bool events to keep.
        kind: "user" or "item" (the mapping's code column is ``<kind>_id``).

    Returns:
        codes [K] int64 >= 1 for the kept events; DataFrame (original: str, <kind>_id: int64).
    """
    values = column.values[keep]
    codes, uniques = pd.factorize(values, sort=True)
    originals = uniques.astype(str) if column.labels is None else column.labels[uniques]
    mapping = pd.DataFrame(
        {
            "original": np.asarray(originals, dtype=object),
            f"{kind}_id": np.arange(1, len(uniques) + 1),
        }
    )
    return codes.astype(np.int64) + 1, mapping


def dense_codes(column: IdColumn) -> np.ndarray:
    """[T] int64 0-based dense codes of an id column (for counting)."""
    if column.labels is not None:
        return column.values
    codes, _ = pd.factorize(column.values)
    return codes.astype(np.int64)


def num_unique(column: IdColumn) -> int:
    """Number of distinct ids in an id column."""
    if column.labels is not None:
        return int(len(column.labels))
    return int(pd.unique(column.values).size)

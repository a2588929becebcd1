"""Registry of raw-data sources: dataset name -> loader returning Interactions."""

from __future__ import annotations

from collections.abc import Callable

from generative_recommenders.data.sources.amazon import load_amazon_books
from generative_recommenders.data.sources.amazon_2023 import load_amazon_2023
from generative_recommenders.data.sources.base import Interactions, SourceOptions
from generative_recommenders.data.sources.custom import load_custom
from generative_recommenders.data.sources.movielens import load_ml_1m, load_ml_20m, load_ml_100k
from generative_recommenders.errors import UserInputError

SOURCES: dict[str, Callable[[SourceOptions], Interactions]] = {
    "ml-100k": load_ml_100k,
    "ml-1m": load_ml_1m,
    "ml-20m": load_ml_20m,
    "amzn-books": load_amazon_books,
    "amazon-2023": load_amazon_2023,
    "csv": load_custom,
}

# Made from another store by preprocess_public_data.py (data/fractal_store.py), not read.
EXPANSIONS = ("fractal", "ml-3b")


def get_source(dataset: str) -> Callable[[SourceOptions], Interactions]:
    """The loader for ``dataset``; UserInputError listing the choices when unknown."""
    try:
        return SOURCES[dataset]
    except KeyError:
        raise UserInputError(
            f"--dataset={dataset!r}: unknown dataset, expected one of "
            f"{', '.join([*SOURCES, *EXPANSIONS, 'all'])}"
        ) from None


__all__ = ["SOURCES", "Interactions", "SourceOptions", "get_source"]

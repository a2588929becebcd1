"""Raw-data sources: each loader registers itself by name (``registry.SOURCES``) in its own file.

A source is ``load(opts: SourceOptions) -> Interactions``, decorated with
``@SOURCES.register("name", public=True)`` (``public``: a published dataset that ``--dataset=all``
and the stores' "how to create me" hints include). Importing this package imports the built-in
ones; ``preprocess_public_data.py --source_module my_module`` imports one of your own.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from generative_recommenders.data.sources.base import Interactions, SourceOptions
from generative_recommenders.errors import UserInputError
from generative_recommenders.registry import SOURCES

# The sources register as they are imported: these first (the order their names are listed
# in), then any other module of this package, so a new source is one file here.
for _module in ("movielens", "amazon", "amazon_2023", "custom"):
    importlib.import_module(f"{__name__}.{_module}")
for _info in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_info.name}")

# Made from another store by preprocess_public_data.py (data/fractal_store.py), not read.
EXPANSIONS = ("fractal", "ml-3b")


def get_source(dataset: str) -> Callable[[SourceOptions], Interactions]:
    """The loader for ``dataset``; UserInputError listing the choices when unknown."""
    if dataset not in SOURCES:
        raise UserInputError(
            f"--dataset={dataset!r}: unknown dataset, expected one of "
            f"{', '.join([*SOURCES.names(), *EXPANSIONS, 'all'])}"
        )
    return SOURCES.get(dataset)


def public_datasets() -> list[str]:
    """Names of the registered published datasets (``--dataset=all``)."""
    return [entry.name for entry in SOURCES.entries() if entry.info.get("public")]


__all__ = ["SOURCES", "Interactions", "SourceOptions", "get_source", "public_datasets"]

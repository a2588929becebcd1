"""Using a trained run: top-k recommendations, similar items, and an exported retrieval artefact.

``Recommender`` (in-process, rebuilt from a run folder) and ``export_artifact`` are imported
lazily, so ``generative_recommenders.recommend.artifact`` (the standalone loader, torch/numpy/json
only) can be imported without gin or the training code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from generative_recommenders.recommend.cache import HistoryCache
    from generative_recommenders.recommend.histories import History
    from generative_recommenders.recommend.recommender import Recommender

__all__ = ["History", "HistoryCache", "Recommender"]

_LAZY = {
    "Recommender": "generative_recommenders.recommend.recommender",
    "History": "generative_recommenders.recommend.histories",
    "HistoryCache": "generative_recommenders.recommend.cache",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)

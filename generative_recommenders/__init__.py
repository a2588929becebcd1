"""generative-recommenders: a trainer for generative-retrieval sequential recommenders.

``generative_recommenders.train(...)`` trains from Python (docs/python.md); it is imported on first
use, so ``import generative_recommenders`` stays light (no torch, no gin).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["TrainedRun", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from generative_recommenders import api

        return getattr(api, name)
    raise AttributeError(f"module 'generative_recommenders' has no attribute {name!r}")

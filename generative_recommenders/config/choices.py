"""The one way a legacy string setting ("HSTU", "local", "MIPSBruteForceTopK", ...) becomes a class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from generative_recommenders.registry import UnknownChoiceError

T = TypeVar("T")
__all__ = ["UnknownChoiceError", "choose"]


def choose(binding: str, value: str, choices: Mapping[str, T]) -> T:
    """``choices[value]``, or UnknownChoiceError: "train_fn.loss_module='X' is not one of: A, B"."""
    if value not in choices:
        raise UnknownChoiceError(f"{binding}={value!r} is not one of: {', '.join(choices)}")
    return choices[value]

"""Importing a user's own module by dotted name (a component registered outside the package).

The working directory goes on ``sys.path`` first, so ``examples.custom_loss`` resolves from where
the command runs (the repository root, usually) whatever script started Python. Spawned DDP workers
inherit ``sys.path`` from the launching process and import the same modules again.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable

from generative_recommenders.errors import UserInputError


def add_working_directory() -> None:
    """Put the current directory on ``sys.path`` (once), as ``python -m`` does."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def import_modules(names: Iterable[str], where: str = "--source_module") -> None:
    """Import each dotted module name; UserInputError (one line) when one cannot be imported."""
    add_working_directory()
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise UserInputError(
                f"{where}={name!r}: cannot import it ({error}); give a dotted module name "
                f"relative to {os.getcwd()}"
            ) from error

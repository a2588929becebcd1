"""Parsing gin files and bindings into the package's configurables, with one-line errors."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Sequence
from pathlib import Path

import gin

from generative_recommenders.errors import UserInputError
from generative_recommenders.imports import add_working_directory

# Every module that registers configurables; importing them makes their names known to gin.
CONFIGURABLE_MODULES = (
    "generative_recommenders.config.train",
    "generative_recommenders.config.data",
    "generative_recommenders.config.modeling",
    "generative_recommenders.config.objective",
    "generative_recommenders.config.evaluation",
    "generative_recommenders.config.components",
)


# Every module under these packages is imported, so a component file dropped into one of them
# registers itself with no import to add anywhere.
COMPONENT_PACKAGES = ("generative_recommenders.modeling", "generative_recommenders.evaluation")


def register_configurables() -> None:
    """Import every configurable module and every component module once (idempotent)."""
    for name in CONFIGURABLE_MODULES:
        importlib.import_module(name)
    for package_name in COMPONENT_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            importlib.import_module(module.name)


def parse_gin(
    config_files: Sequence[str], bindings: Sequence[str] = (), skip_unknown: bool = False
) -> None:
    """Clear gin, then parse ``config_files`` followed by ``bindings`` (later ones win).

    ``skip_unknown``: ignore bindings of configurables that no longer exist (a run folder's
    ``config.gin`` written by an older version names a few).

    Raises:
        UserInputError: a missing file, or a binding gin does not accept, in one line.
    """
    register_configurables()
    # A gin ``import my_module`` line resolves from the working directory (see imports.py).
    add_working_directory()
    gin.clear_config()
    for path in config_files:
        if not Path(path).is_file():
            raise UserInputError(f"{path}: gin config file not found")
        _parse(str(path), lambda p=path: gin.parse_config_file(p, skip_unknown=skip_unknown))
    for binding in bindings:
        _parse(f"--gin_bindings={binding!r}", lambda b=binding: gin.parse_config(b))


def _check_train_fn_names(source: str) -> None:
    # train_fn takes any name in gin (its sections declare them), so check them here, per source.
    from generative_recommenders.config.train import (
        bound_train_fn_names,
        setting_names,
        unknown_names,
    )

    for name in unknown_names(bound_train_fn_names()):
        close = difflib.get_close_matches(name, setting_names(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserInputError(f"{source}: train_fn doesn't have a parameter named {name!r}{hint}")


def _parse(source: str, parse) -> None:
    try:
        parse()
    except ImportError as error:
        what = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise UserInputError(
            f"{source}: {what} (a gin 'import' line names a module importable "
            "from the working directory, e.g. examples.custom_loss)"
        ) from error
    except (ValueError, SyntaxError, KeyError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise UserInputError(f"{source}: {first_line}") from error
    except Exception as error:  # tokenize.TokenError and other parser failures
        raise UserInputError(
            f"{source}: cannot parse gin ({type(error).__name__}: {error})"
        ) from error
    _check_train_fn_names(source)


def operative_config() -> str:
    """The bindings actually used so far (call after the run has built everything)."""
    return gin.operative_config_str()

"""Checkpoints: written to a temporary name then renamed, loaded with ``weights_only=True``.

Layout of a run's checkpoint folder: ``last.pt`` (the newest state, for ``--resume``),
``ep<EPOCH>.pt`` and ``step<STEP>.pt`` (the last ``keep_last`` of each kept) and ``best.pt``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch

from generative_recommenders.atomic import atomic_write
from generative_recommenders.errors import UserInputError

_EPOCH_FILE = re.compile(r"^ep(\d+)\.pt$")
_STEP_FILE = re.compile(r"^step(\d+)\.pt$")


def save_checkpoint(state: dict, path: Path, aliases: tuple[Path, ...] = ()) -> None:
    """Atomically write ``state`` to ``path`` (a crash leaves the previous file intact).

    Each alias (e.g. ``last.pt``) atomically becomes the same file: a hard link where the
    filesystem has them, so a large state is written once, else a copy."""
    atomic_write(path, lambda temporary: torch.save(state, temporary))
    for alias in aliases:
        atomic_write(alias, lambda temporary: _link_or_copy(path, temporary))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint safely (tensors and plain containers only)."""
    if not path.is_file():
        raise UserInputError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise UserInputError(
            f"{path}: not a readable checkpoint ({type(error).__name__})"
        ) from error


def epoch_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The ``ep<N>.pt`` files of ``folder``, oldest first."""
    return _numbered_checkpoints(folder, _EPOCH_FILE)


def step_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """The ``step<N>.pt`` files of ``folder``, oldest first."""
    return _numbered_checkpoints(folder, _STEP_FILE)


def _numbered_checkpoints(folder: Path, pattern: re.Pattern) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = pattern.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    checkpoints = epoch_checkpoints(folder)
    return checkpoints[-1][1] if checkpoints else None


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` epoch checkpoints and the newest ``keep_last`` step
    checkpoints (``best.pt`` and ``last.pt`` are never touched)."""
    if keep_last <= 0:
        return
    for found in (epoch_checkpoints(folder), step_checkpoints(folder)):
        for _, path in found[:-keep_last]:
            path.unlink(missing_ok=True)


def check_compatible(model_state: dict, checkpoint_state: dict, source: Path) -> None:
    """Refuse a checkpoint of another model configuration, naming the first mismatch."""
    for name, tensor in model_state.items():
        if name not in checkpoint_state:
            raise UserInputError(f"{source}: parameter {name!r} is missing from the checkpoint")
        if tuple(checkpoint_state[name].shape) != tuple(tensor.shape):
            raise UserInputError(
                f"{source}: parameter {name!r} has shape {tuple(checkpoint_state[name].shape)} "
                f"in the checkpoint but {tuple(tensor.shape)} in this configuration"
            )
    extra = sorted(set(checkpoint_state) - set(model_state))
    if extra:
        raise UserInputError(f"{source}: parameter {extra[0]!r} is not in this configuration")

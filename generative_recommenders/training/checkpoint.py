"""Checkpoints: written to a temporary name then renamed, loaded with ``weights_only=True``.

Layout of a run's checkpoint folder: ``ep<EPOCH>.pt`` (the last ``keep_last`` kept) and ``best.pt``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from generative_recommenders.atomic import atomic_write
from generative_recommenders.errors import UserInputError

_EPOCH_FILE = re.compile(r"^ep(\d+)\.pt$")


def save_checkpoint(state: dict, path: Path) -> None:
    """Atomically write ``state`` to ``path`` (a crash leaves the previous file intact)."""
    atomic_write(path, lambda temporary: torch.save(state, temporary))


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
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = _EPOCH_FILE.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def latest_checkpoint(folder: Path) -> Path | None:
    checkpoints = epoch_checkpoints(folder)
    return checkpoints[-1][1] if checkpoints else None


def prune_checkpoints(folder: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` epoch checkpoints (``best.pt`` is never touched)."""
    if keep_last <= 0:
        return
    for _, path in epoch_checkpoints(folder)[:-keep_last]:
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

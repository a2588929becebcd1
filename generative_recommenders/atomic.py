"""Writing files and folders so that a crash never leaves a half-written one behind.

Everything is written under a temporary sibling name, then renamed into place (``os.replace`` is
atomic within a filesystem); a reader sees the old version or the new one, never a mix.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _sibling(path: Path, kind: str) -> Path:
    return path.parent / f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def atomic_directory(out: Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``out`` (old contents removed).

    On an exception nothing changes at ``out`` and the temporary folder is removed.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _sibling(out, "tmp"), _sibling(out, "old")
    try:
        tmp.mkdir()
        yield tmp
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

"""Logging setup that survives ``import fbgemm_gpu``.

Importing fbgemm_gpu configures the root logger at WARNING, which turns a later
``logging.basicConfig`` into a silent no-op; ``force=True`` replaces its handler.
"""

from __future__ import annotations

import logging
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _not_fbgemm_chatter(record: logging.LogRecord) -> bool:
    """fbgemm_gpu logs one INFO line per library it loads, through the root logger."""
    return record.levelno > logging.INFO or "fbgemm_gpu" not in record.pathname


def configure_logging(level: int = logging.INFO, prefix: str = "") -> None:
    """Send INFO (or ``level``) and above to stderr, replacing any earlier root handlers."""
    fmt = f"{prefix}{LOG_FORMAT}" if prefix else LOG_FORMAT
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S", stream=sys.stderr, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_not_fbgemm_chatter)

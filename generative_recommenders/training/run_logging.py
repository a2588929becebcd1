"""Run records: TensorBoard scalars, JSON files and curves.png on rank 0; no-ops elsewhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from generative_recommenders.atomic import atomic_write_text
from generative_recommenders.training.curves import CURVES_FILE, write_curves

_LOG = logging.getLogger(__name__)


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON through a temporary name and a rename."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


class RunLogger:
    """TensorBoard writer for one run folder; inactive (no files, no-ops) when ``active`` is False."""

    def __init__(self, run_dir: Path, active: bool) -> None:
        self.run_dir = run_dir
        self.active = active
        self._writer = None
        if active:
            from torch.utils.tensorboard import SummaryWriter

            run_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(run_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, float(value), step)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.scalar(f"{prefix}/{name}", value, step)

    def text_file(self, name: str, text: str) -> None:
        if self.active:
            atomic_write_text(self.run_dir / name, text)

    def json_file(self, name: str, payload: dict) -> None:
        if self.active:
            write_json_atomic(self.run_dir / name, payload)

    def curves(
        self,
        history: list[dict],
        best_epoch: int,
        eval_split: str,
        final_test: dict[str, float] | None = None,
    ) -> None:
        """(Re)draw ``curves.png``; a failure is a logged warning, never the end of training."""
        if not self.active:
            return
        try:
            write_curves(self.run_dir / CURVES_FILE, history, best_epoch, eval_split, final_test)
        except Exception as error:  # a picture is never worth a lost run
            _LOG.warning(
                "could not write %s (%s: %s); training goes on",
                self.run_dir / CURVES_FILE, type(error).__name__, error,
            )  # fmt: skip

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

"""Stop requests from a cluster scheduler: SIGTERM and SIGUSR1 (what SLURM and others send before
preempting a job) only set a flag here; the trainer reads it after each step, and every rank
stops at the same step (docs/training.md, "Long runs")."""

from __future__ import annotations

import signal
import threading
from types import FrameType

PREEMPTION_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name)
)


class StopSignals:
    """While entered, SIGTERM and SIGUSR1 record their name in :attr:`received` instead of ending
    the process. The previous handlers come back on exit. Outside the main thread (where Python
    cannot install handlers) it does nothing."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in PREEMPTION_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(number).name

    def __call__(self) -> str | None:
        """The first signal received so far, or None."""
        return self.received

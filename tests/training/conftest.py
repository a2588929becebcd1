"""A tiny generated interaction file turned into a store, shared by the trainer's tests."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "tiny" / "hstu.gin"


def run_main(cwd: pathlib.Path, *arguments: str) -> subprocess.CompletedProcess:
    """``python main.py <arguments>`` as a user runs it: a fresh process started in ``cwd``
    with the repository importable; stdout and stderr captured as text; at most 120 s."""
    return subprocess.run(
        [sys.executable, str(REPO / "main.py"), *arguments],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_tiny_events(path: pathlib.Path, num_users: int = 61, seed: int = 0) -> None:
    """Users who mostly walk a ring of 40 items, so a model can learn something in a few steps."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, num_users + 1):
        start = int(rng.integers(1, 41))
        for t in range(int(rng.integers(6, 25))):
            item = (start + t - 1) % 40 + 1 if rng.random() < 0.8 else int(rng.integers(1, 41))
            rows.append((f"u{user}", item, 1_000 + 60 * t, int(rng.integers(1, 6))))
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"]).to_csv(
        path, index=False
    )


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("tiny_store")
    events = root / "events.csv"
    write_tiny_events(events)
    preprocess("csv", SourceOptions(data_dir=root / "data", input_file=events, name="tiny"))
    return root / "data"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]

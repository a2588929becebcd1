"""A gloo rank for tests/training/test_long_runs.py, kept in a module with few imports so that
spawned processes start fast."""

from __future__ import annotations

import json
import math
import pathlib

import torch

from generative_recommenders.training.distributed import (
    DistributedContext,
    any_rank,
    finish_distributed,
    init_distributed,
)


def agreement_worker(rank: int, port: int, out_dir: str) -> None:
    """Rank 1 alone has a real nan loss; every rank writes what :func:`any_rank` agreed."""
    context = DistributedContext(rank, rank, 2, torch.device("cpu"))
    init_distributed(context, f"tcp://127.0.0.1:{port}")
    loss = torch.tensor(0.0) / torch.tensor(0.0) if rank == 1 else torch.tensor(1.5)
    agreed = any_rank([not math.isfinite(float(loss)), False], torch.device("cpu"))
    (pathlib.Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(agreed))
    finish_distributed()

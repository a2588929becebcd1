"""A finished two-process gloo job leaves no communication threads behind.

If the default process group outlived ``finish_distributed``, gloo's threads would still run while
the interpreter tears down at exit, which now and then ended a successful job in std::terminate.
"""

from __future__ import annotations

import json
import pathlib

import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from generative_recommenders.training.distributed import (
    DistributedContext,
    finish_distributed,
    init_distributed,
)
from tests.training.conftest import free_port


def _native_thread_names() -> list[str]:
    return sorted(p.read_text().strip() for p in pathlib.Path("/proc/self/task").glob("*/comm"))


def _worker(rank: int, port: int, out_dir: str) -> None:
    context = DistributedContext(rank, rank, 2, torch.device("cpu"))
    init_distributed(context, f"tcp://127.0.0.1:{port}", timeout_s=60.0)
    model = DistributedDataParallel(
        torch.nn.Linear(8, 4)
    )  # imports torch._dynamo, as training does
    model(torch.ones(3, 8)).sum().backward()
    during = _native_thread_names()
    del model
    finish_distributed()
    after = _native_thread_names()
    (pathlib.Path(out_dir) / f"rank{rank}.json").write_text(json.dumps([during, after]))


def test_finished_job_leaves_no_gloo_threads(tmp_path) -> None:
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        during, after = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert any("gloo" in name for name in during), during  # the check can see gloo threads
        assert not any("gloo" in name for name in after), (rank, after)

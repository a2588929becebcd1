"""The process group: creation over ``tcp://`` (or torchrun's ``env://``), and sum reductions."""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

# Imported before any process group exists, on purpose: this torch module evaluates
# ``group.WORLD`` in its functions' default arguments at import time, and DDP's constructor
# imports it (through torch._dynamo). Imported after init_process_group, it would hold the
# default group forever: destroy_process_group could not free it, and gloo's threads would
# still be running while the interpreter tears down at exit (a rare std::terminate).
import torch.distributed.nn.functional  # noqa: F401  isort: skip


@dataclass(frozen=True)
class DistributedContext:
    """Where this worker sits in the job. ``world_size == 1`` runs without a process group."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    local_world_size: int = 1  # workers on this node

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


_STORE: dist.Store | None = None  # the rendezvous store this process created (tcp:// only)
_LEFT_KEY = "generative_recommenders/ranks_left"


def init_distributed(
    context: DistributedContext, init_method: str, timeout_s: float = 300.0
) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA). A no-op when world_size is 1.

    With ``tcp://host:port`` this process creates the rendezvous store itself (rank 0 hosts it),
    so that :func:`finish_distributed` can keep it alive until every rank has left."""
    global _STORE
    if context.device.type == "cuda":
        torch.cuda.set_device(context.device)
    if context.world_size == 1:
        return
    timeout = datetime.timedelta(seconds=timeout_s)
    store = None
    if init_method.startswith("tcp://"):
        host, port = init_method[len("tcp://") :].rsplit(":", 1)
        store = dist.TCPStore(
            host.strip("[]"), int(port), context.world_size, context.rank == 0, timeout
        )
    dist.init_process_group(
        backend=context.backend,
        init_method=None if store is not None else init_method,
        store=store,
        rank=context.rank,
        world_size=context.world_size,
        timeout=timeout,
    )
    _STORE = store


def finish_distributed(timeout_s: float = 60.0) -> None:
    """The orderly end of a successful job: every rank meets at a barrier and leaves the process
    group; ranks other than 0 then say so through the store, and rank 0, whose process hosts the
    store, waits for all of them before it returns (and exits). Without this, rank 0 could exit
    while another rank was still tearing down, and that rank died in its teardown."""
    global _STORE
    if not is_distributed():
        return
    rank, world_size = dist.get_rank(), dist.get_world_size()
    dist.barrier()
    dist.destroy_process_group()
    store, _STORE = _STORE, None
    if store is None:  # torchrun: its agent hosts the store and outlives the workers
        return
    if rank != 0:
        store.add(_LEFT_KEY, 1)
        return
    deadline = time.monotonic() + timeout_s
    while store.add(_LEFT_KEY, 0) < world_size - 1 and time.monotonic() < deadline:
        time.sleep(0.02)


def shutdown_distributed() -> None:
    """Leave the process group if still in it (any exit path; see :func:`finish_distributed`)."""
    global _STORE
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _STORE = None


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum ``values`` over all ranks (identity on one process); returns a new tensor."""
    out = values.clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's decision, on every rank (e.g. early stopping)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """For each flag, whether it is set on any rank (one small all-reduce; none on one process)."""
    if not is_distributed():
        return list(flags)
    counts = all_reduce_sum(torch.tensor([int(f) for f in flags], dtype=torch.int32, device=device))
    return [bool(c) for c in counts.tolist()]


def gather_to_main(value: object) -> list | None:
    """Every rank's ``value`` in rank order on rank 0 (``None`` elsewhere); ``[value]`` alone."""
    if not is_distributed():
        return [value]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def torchrun_environment() -> tuple[int, int, int, int] | None:
    """(rank, local_rank, world_size, local_world_size) when launched by torchrun, else None."""
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    if not all(name in os.environ for name in names):
        return None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    rank, local_rank, world = (int(os.environ[n]) for n in ("RANK", "LOCAL_RANK", "WORLD_SIZE"))
    return rank, local_rank, world, local_world


def set_cpu_threads(context: DistributedContext) -> int:
    """Share this node's cores among its CPU workers (one worker keeps torch's default)."""
    if context.device.type != "cpu" or context.local_world_size <= 1:
        return torch.get_num_threads()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // context.local_world_size)
    torch.set_num_threads(threads)
    return threads

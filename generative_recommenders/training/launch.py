"""Starting the workers: one in-process worker, ``torch.multiprocessing.spawn`` for several, or the
ranks torchrun already started. Failures end the job with one line and a non-zero exit."""

from __future__ import annotations

import errno
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.multiprocessing as mp

from generative_recommenders.errors import UserInputError
from generative_recommenders.training.distributed import DistributedContext, torchrun_environment
from generative_recommenders.training.preemption import PREEMPTION_SIGNALS

_LOG = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Topology:
    """The job's shape: ``nnodes`` machines with ``nproc_per_node`` workers each."""

    master_addr: str
    master_port: int
    nproc_per_node: int
    nnodes: int
    node_rank: int
    device: str  # "cpu" or "cuda" (resolved)

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    @property
    def init_method(self) -> str:
        host = f"[{self.master_addr}]" if ":" in self.master_addr else self.master_addr
        return f"tcp://{host}:{self.master_port}"

    def context(self, local_rank: int) -> DistributedContext:
        rank = self.node_rank * self.nproc_per_node + local_rank
        device = torch.device("cuda", local_rank) if self.device == "cuda" else torch.device("cpu")
        return DistributedContext(
            rank=rank,
            local_rank=local_rank,
            world_size=self.world_size,
            device=device,
            local_world_size=self.nproc_per_node,
        )


def resolve_device(requested: str) -> str:
    if requested not in DEVICES:
        raise UserInputError(f"--device={requested!r}: expected one of {', '.join(DEVICES)}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserInputError("--device=cuda: no CUDA device is visible to PyTorch")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def default_nproc_per_node(device: str) -> int:
    return torch.cuda.device_count() if device == "cuda" else 1


def validate_topology(topology: Topology) -> None:
    """Clear one-line errors for impossible shapes, a busy port or an unreachable master."""
    if topology.nproc_per_node < 1 or topology.nnodes < 1:
        raise UserInputError("--nproc_per_node and --nnodes must be at least 1")
    if not 0 <= topology.node_rank < topology.nnodes:
        raise UserInputError(
            f"--node_rank={topology.node_rank}: expected 0..{topology.nnodes - 1} "
            f"for --nnodes={topology.nnodes}"
        )
    if not 1 <= topology.master_port <= 65535:
        raise UserInputError(f"--master_port={topology.master_port}: expected a port in 1..65535")
    if topology.device == "cuda" and topology.nproc_per_node > torch.cuda.device_count():
        raise UserInputError(
            f"--nproc_per_node={topology.nproc_per_node}: only "
            f"{torch.cuda.device_count()} CUDA devices are visible"
        )
    if topology.world_size == 1:
        return
    if topology.node_rank == 0:
        check_port_free(topology.master_addr, topology.master_port)
    else:
        wait_for_master(topology.master_addr, topology.master_port, timeout_s=120.0)


def check_port_free(addr: str, port: int) -> None:
    """Fail early when the rendezvous port on this (master) node is taken."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((addr, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserInputError(
                    f"--master_port={port}: port {port} on {addr} is already in use; "
                    "pass a free port with --master_port"
                ) from error
            raise UserInputError(
                f"--master_addr={addr}: cannot listen on {addr}:{port} on this node ({error.strerror})"
            ) from error


def wait_for_master(addr: str, port: int, timeout_s: float) -> None:
    """On nodes other than 0: wait until the master accepts connections, or fail in one line."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((addr, port), timeout=5.0):
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise UserInputError(
                    f"--master_addr={addr} --master_port={port}: master unreachable after "
                    f"{timeout_s:.0f}s ({error}); start node 0 first and check the address"
                ) from error
            time.sleep(1.0)


WorkerFn = Callable[[DistributedContext, str, object], object]


def _spawned_worker(
    local_rank: int, worker_fn: WorkerFn, topology: Topology, payload, results
) -> None:
    context = topology.context(local_rank)
    # A worker that dies in native code (e.g. std::terminate) prints its Python stacks first.
    faulthandler.enable()
    try:
        result = worker_fn(context, topology.init_method, payload)
        if context.rank == 0:
            results.put(result)
    except UserInputError as error:
        print(f"error (rank {context.rank}): {error}", file=sys.stderr, flush=True)
        sys.exit(error.exit_code)


def launch(worker_fn: WorkerFn, topology: Topology, payload: object) -> object:
    """Run ``worker_fn(context, init_method, payload)`` on every local rank of this node.

    Returns rank 0's result on the node that runs rank 0, else None.

    Raises:
        UserInputError: bad topology, or a worker that exited with a user-input error.
        SystemExit: a worker that died of anything else (its traceback is already printed).
    """
    torchrun = torchrun_environment()
    if torchrun is not None:
        rank, local_rank, world_size, local_world_size = torchrun
        device = (
            torch.device("cuda", local_rank) if topology.device == "cuda" else torch.device("cpu")
        )
        context = DistributedContext(rank, local_rank, world_size, device, local_world_size)
        result = worker_fn(context, "env://", payload)
        return result if rank == 0 else None
    validate_topology(topology)
    if topology.world_size == 1:
        return worker_fn(topology.context(0), topology.init_method, payload)
    results = mp.get_context("spawn").SimpleQueue()
    try:
        workers = mp.start_processes(
            _spawned_worker,
            args=(worker_fn, topology, payload, results),
            nprocs=topology.nproc_per_node,
            join=False,
            start_method="spawn",
        )
        _join_forwarding_signals(workers)
    except mp.ProcessExitedException as error:
        code = error.exit_code if error.exit_code and error.exit_code > 0 else 1
        _LOG.error("worker %d exited with code %s; the job was stopped", error.error_index, code)
        raise SystemExit(code) from None
    except mp.ProcessRaisedException as error:
        print(str(error), file=sys.stderr)
        _LOG.error("worker %d failed (traceback above); the job was stopped", error.error_index)
        raise SystemExit(1) from None
    return None if results.empty() else results.get()


def _join_forwarding_signals(workers: mp.ProcessContext) -> None:
    """Wait for the workers; a preemption signal sent to this (launching) process is passed on
    to each of them, which stop together at their next step (training/preemption.py)."""

    def forward(number: int, frame: object) -> None:
        for pid in workers.pids():
            try:
                os.kill(pid, number)
            except ProcessLookupError:  # that worker has already exited
                pass

    in_main_thread = threading.current_thread() is threading.main_thread()
    numbers = PREEMPTION_SIGNALS if in_main_thread else ()  # handlers need the main thread
    previous = {number: signal.signal(number, forward) for number in numbers}
    try:
        while not workers.join():
            pass
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

"""Connecting to Ray: a local instance started and stopped by the command, or an existing cluster.

Everything Ray-specific about *where* work runs lives here, so the searches only describe *what*
runs. Trials import this package, so a local instance gets the repository on ``PYTHONPATH`` and a
cluster receives the package itself through Ray's ``py_modules`` runtime environment.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from generative_recommenders.errors import UserInputError

_LOG = logging.getLogger(__name__)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = PACKAGE_DIR.parent


def check_address(address: str) -> None:
    """Fail in one line, before anything starts, when ``address`` cannot be reached.

    ``""`` (local instance) and ``"auto"`` (checked by Ray itself) pass; ``ray://host:port`` and
    ``host:port`` must accept a TCP connection within 5 seconds.
    """
    if address in ("", "auto", "local"):
        return
    target = address.removeprefix("ray://")
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise UserInputError(
            f"--address={address!r}: expected '' (local), 'auto', 'ray://host:port' or 'host:port'"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=5.0):
            pass
    except OSError as error:
        raise UserInputError(
            f"--address={address!r}: cannot reach the Ray cluster ({error.strerror or error})"
        ) from error


@contextlib.contextmanager
def ray_session(address: str, num_cpus: int | None = None) -> Iterator[None]:
    """``ray.init`` for the duration of the block; a local instance is shut down afterwards."""
    import ray

    check_address(address)
    # Trials keep the command's working directory: relative gin paths and `import` lines resolve
    # as they do for main.py.
    env_vars = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    kwargs: dict = {"configure_logging": False, "log_to_driver": False}
    if address in ("", "local"):
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
        env_vars["PYTHONPATH"] = path
        kwargs.update(include_dashboard=False, num_cpus=num_cpus)
        kwargs["runtime_env"] = {"env_vars": env_vars}
    else:
        kwargs["address"] = address
        kwargs["runtime_env"] = {"env_vars": env_vars, "py_modules": [str(PACKAGE_DIR)]}
    try:
        ray.init(**kwargs)
    except ConnectionError as error:
        raise UserInputError(f"--address={address!r}: {str(error).splitlines()[0]}") from error
    try:
        yield
    finally:
        ray.shutdown()


def train_in_this_process(options, device: str, threads: int, on_full_evaluation=None) -> dict:
    """One training run (``config.run.run_training``) as one process on this Ray worker, with
    ``threads`` torch threads (what Ray reserved for it); returns its final metrics ({} if none)."""
    import torch

    from generative_recommenders.config.run import run_training
    from generative_recommenders.training.launch import Topology

    torch.set_num_threads(threads)
    topology = Topology("localhost", 29500, 1, 1, 0, device)  # one process: no rendezvous
    return run_training(options, topology, on_full_evaluation=on_full_evaluation) or {}

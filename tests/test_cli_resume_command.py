"""The resume command printed when a run is preempted: the same command line, ``--resume`` set."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from generative_recommenders.cli import resume_command


def test_resume_replaces_any_earlier_resume_and_keeps_the_rest(tmp_path) -> None:
    argv = [
        "main.py",
        "--gin_config_file=configs/ml-100k/hstu.gin",
        '--gin_bindings=train_fn.dataset_name = "ml-100k"',
        "--resume",
        "latest",
        "--nproc_per_node=2",
        "--resume=old.pt",
    ]
    command = shlex.split(resume_command(argv, str(tmp_path / "step7.pt")))
    assert command == [
        sys.executable,
        "main.py",
        "--gin_config_file=configs/ml-100k/hstu.gin",
        '--gin_bindings=train_fn.dataset_name = "ml-100k"',
        "--nproc_per_node=2",
        f"--resume={Path(tmp_path / 'step7.pt').resolve()}",
    ]

"""Long runs: step checkpoints, max_steps, exact mid-epoch resume, preemption signals and
non-finite losses, run for real (in-process, or main.py with gloo workers and real signals)."""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from generative_recommenders.config.run import RunOptions, run_training
from generative_recommenders.config.train import TrainConfig
from generative_recommenders.errors import UserInputError
from generative_recommenders.training.launch import Topology
from tests.training.agreement_worker import agreement_worker
from tests.training.conftest import REPO, TINY_CONFIG, free_port

# The tiny store has 61 training users: 4 batches of 16 per epoch on one worker, 2 on each of two.
STEP_BINDINGS = (
    "train_fn.num_epochs = 3",
    "train_fn.positional_sampling_ratio = 0.8",  # the dataset's own per-epoch randomness too
    "train_fn.checkpoint_every_n_steps = 3",
    "train_fn.eval_every_n_steps = 5",
    "train_fn.keep_last_n_checkpoints = 10",
)


def _run(root: pathlib.Path, data_dir: pathlib.Path, *bindings: str, resume=None) -> dict:
    options = RunOptions(
        gin_config_files=(str(TINY_CONFIG),),
        gin_bindings=tuple(bindings),
        data_dir=str(data_dir),
        exp_dir=str(root / "exps"),
        ckpt_dir=str(root / "ckpts"),
        resume=resume,
    )
    return run_training(options, Topology("127.0.0.1", free_port(), 1, 1, 0, "cpu"))


def _scalars(run_dir: pathlib.Path, tag: str) -> dict[int, float]:
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {event.step: event.value for event in events.Scalars(tag)}


def _checkpoint_dir(root: pathlib.Path) -> pathlib.Path:
    (folder,) = (root / "ckpts").glob("*/*")
    return folder


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory, tiny_data_dir) -> tuple[pathlib.Path, dict]:
    """Three uninterrupted epochs (12 steps), a step checkpoint every 3 steps."""
    root = tmp_path_factory.mktemp("straight")
    return root, _run(root, tiny_data_dir, *STEP_BINDINGS)


def test_step_checkpoints_and_step_evaluations(straight_run) -> None:
    root, result = straight_run
    folder = _checkpoint_dir(root)
    names = {p.name for p in folder.iterdir()}
    assert {"step3.pt", "step6.pt", "step9.pt", "step12.pt", "ep2.pt", "last.pt"} <= names
    mid = torch.load(folder / "step6.pt", weights_only=True)
    assert (mid["epoch"], mid["step"], mid["epoch_step"]) == (1, 6, 2)  # half of epoch 1
    assert result["steps"] == 12 and result["skipped_steps"] == 0
    full = _scalars(pathlib.Path(result["run_dir"]), "eval_step_full/ndcg@10")
    assert sorted(full) == [5, 10]


def test_resume_from_a_mid_epoch_checkpoint_gives_the_same_losses(
    straight_run, tmp_path, tiny_data_dir
) -> None:
    root, straight = straight_run
    step6 = _checkpoint_dir(root) / "step6.pt"
    resumed = _run(tmp_path, tiny_data_dir, *STEP_BINDINGS, resume=str(step6))
    expected = _scalars(pathlib.Path(straight["run_dir"]), "losses/ar_loss")
    got = _scalars(pathlib.Path(resumed["run_dir"]), "losses/ar_loss")
    assert sorted(expected) == list(range(1, 13)) and sorted(got) == list(range(7, 13))
    assert len({expected[s] for s in got}) == len(got)  # the losses do change from step to step
    assert got == {step: expected[step] for step in got}  # bit-identical, step by step
    assert resumed["test"] == straight["test"]
    last = torch.load(_checkpoint_dir(tmp_path) / "last.pt", weights_only=True)
    assert last["history"] == torch.load(_checkpoint_dir(root) / "last.pt")["history"]


def test_max_steps_ends_normally_and_resumes_to_the_same_losses(
    straight_run, tmp_path, tiny_data_dir
) -> None:
    root, straight = straight_run
    stopped = _run(tmp_path, tiny_data_dir, *STEP_BINDINGS, "train_fn.max_steps = 5")
    run_dir = pathlib.Path(stopped["run_dir"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 5 and metrics["test"]["num_users"] == 61  # final evaluation
    assert sorted(_scalars(run_dir, "losses/ar_loss")) == [1, 2, 3, 4, 5]
    last = torch.load(_checkpoint_dir(tmp_path) / "last.pt", weights_only=True)
    assert (last["epoch"], last["step"], last["epoch_step"]) == (1, 5, 1)
    assert (_checkpoint_dir(tmp_path) / "step5.pt").is_file()

    resumed = _run(tmp_path, tiny_data_dir, *STEP_BINDINGS, resume="latest")
    expected = _scalars(pathlib.Path(straight["run_dir"]), "losses/ar_loss")
    assert _scalars(run_dir, "losses/ar_loss") == expected  # steps 1-5, then 6-12 resumed
    assert resumed["test"] == straight["test"] and resumed["steps"] == 12


def test_a_mid_epoch_checkpoint_needs_the_same_number_of_workers(
    straight_run, tmp_path, tiny_data_dir
) -> None:
    state = torch.load(_checkpoint_dir(straight_run[0]) / "step6.pt", weights_only=True)
    state["world_size"] = 2
    edited = tmp_path / "two_workers.pt"
    torch.save(state, edited)
    with pytest.raises(UserInputError, match="resume it with 2 workers"):
        _run(tmp_path, tiny_data_dir, *STEP_BINDINGS, resume=str(edited))


def test_skip_makes_no_update_and_counts_the_skipped_steps(tmp_path, tiny_data_dir) -> None:
    # A temperature this small turns every logit into inf: every loss is nan from step 1.
    skipped = _run(
        tmp_path / "skip",
        tiny_data_dir,
        "train_fn.num_epochs = 2",
        "train_fn.temperature = 1e-40",
        'train_fn.on_nonfinite_loss = "skip"',
    )
    frozen = _run(
        tmp_path / "lr0", tiny_data_dir, "train_fn.num_epochs = 2", "train_fn.learning_rate = 0.0"
    )
    assert (skipped["steps"], skipped["skipped_steps"]) == (8, 8)
    assert skipped["test"] == frozen["test"]  # the seeded initial weights, never updated
    metrics = json.loads((pathlib.Path(skipped["run_dir"]) / "metrics.json").read_text())
    assert metrics["skipped_steps"] == 8
    assert _scalars(pathlib.Path(skipped["run_dir"]), "train/skipped_steps")[8] == 8


def test_a_non_finite_loss_on_one_rank_is_seen_by_every_rank(tmp_path) -> None:
    mp.spawn(agreement_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == [True, False]


def _main(args: list[str], cwd: pathlib.Path, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(REPO / "main.py"), *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def _dirs(root: pathlib.Path, data_dir: pathlib.Path) -> list[str]:
    return [f"--data_dir={data_dir}", f"--exp_dir={root / 'exps'}", f"--ckpt_dir={root / 'ckpts'}"]


def _signal_once_training_runs(process: subprocess.Popen, root: pathlib.Path, number) -> str:
    """Send ``number`` when rank 0 has made its run folder (every rank is in its worker then)."""
    deadline = time.monotonic() + 240
    while not list((root / "exps").glob("*/*")):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)
    process.send_signal(number)
    _, stderr = process.communicate(timeout=300)
    return stderr


def _one_stop_line(stderr: str, start: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith(start)]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def test_sigterm_stops_two_workers_with_a_checkpoint_and_the_resume_command(
    tmp_path, tiny_data_dir
) -> None:
    flags = [f"--gin_config_file={TINY_CONFIG}", "--nproc_per_node=2", "--device=cpu"]
    many = ["--gin_bindings=train_fn.num_epochs = 1000"]
    interrupted = tmp_path / "interrupted"
    process = _main(
        [*flags, *many, f"--master_port={free_port()}", *_dirs(interrupted, tiny_data_dir)],
        tmp_path,
    )
    stderr = _signal_once_training_runs(process, interrupted, signal.SIGTERM)
    assert process.returncode == 75, stderr[-3000:]
    line = _one_stop_line(stderr, "preempted by SIGTERM at step ")
    step = int(line.split("at step ")[1].split(":")[0])
    checkpoint = pathlib.Path(line.split("checkpoint ")[1].split(" written")[0])
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] == step and state["world_size"] == 2 and len(state["ranks"]) == 2

    # The printed command, as a requeued job would run it (a fresh port; a few more steps).
    command = shlex.split(line.split("resume with: ")[1])
    assert command[-1] == f"--resume={checkpoint}"
    command = [a for a in command if not a.startswith("--master_port=")]
    target = step + 3
    limit = [f"--gin_bindings=train_fn.max_steps = {target}", f"--master_port={free_port()}"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    resumed = subprocess.run(
        [*command, *limit], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    straight = tmp_path / "straight"
    reference = _main(
        [*flags, *many, *limit, *_dirs(straight, tiny_data_dir)], tmp_path
    ).communicate(timeout=300)
    (run_dir,) = (interrupted / "exps").glob("*/*")
    (straight_dir,) = (straight / "exps").glob("*/*")
    expected = _scalars(straight_dir, "losses/ar_loss")
    assert sorted(expected) == list(range(1, target + 1)), reference[1][-3000:]
    assert _scalars(run_dir, "losses/ar_loss") == expected  # two ranks' generators restored


def test_sigusr1_stops_one_worker_with_a_checkpoint(tmp_path, tiny_data_dir) -> None:
    process = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            "--gin_bindings=train_fn.num_epochs = 1000",
            "--device=cpu",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        tmp_path,
    )
    stderr = _signal_once_training_runs(process, tmp_path, signal.SIGUSR1)
    assert process.returncode == 75, stderr[-3000:]
    line = _one_stop_line(stderr, "preempted by SIGUSR1 at step ")
    assert "--resume=" in line and shlex.quote("--gin_bindings=train_fn.num_epochs = 1000") in line
    checkpoint = pathlib.Path(line.split("checkpoint ")[1].split(" written")[0])
    assert checkpoint.name.startswith("step") and checkpoint.is_file()
    assert (checkpoint.parent / "last.pt").samefile(checkpoint)


def test_non_finite_loss_stops_with_the_step_and_the_last_good_checkpoint(
    tmp_path, tiny_data_dir
) -> None:
    # A learning rate of 1e10 sends the weights far enough in one update for a nan at step 2.
    process = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            "--gin_bindings=train_fn.learning_rate = 1e10",
            "--gin_bindings=train_fn.checkpoint_every_n_steps = 1",
            "--device=cpu",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        tmp_path,
    )
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 3, stderr[-3000:]
    line = _one_stop_line(stderr, "error: non-finite loss")
    assert "at step 2;" in line
    good = pathlib.Path(line.split("the last good checkpoint is ")[1].split(" (")[0])
    assert good.name == "step1.pt"
    state = torch.load(good, weights_only=True)
    assert state["step"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert not list((tmp_path / "exps").glob("*/*/metrics.json"))


@pytest.mark.parametrize(
    "binding, value",
    [
        ("checkpoint_every_n_steps", -1),
        ("eval_every_n_steps", -2),
        ("max_steps", -3),
        ("on_nonfinite_loss", "ignore"),
    ],
)
def test_bad_long_run_bindings_are_named(binding, value) -> None:
    with pytest.raises(ValueError, match=f"train_fn.{binding}={value!r}"):
        TrainConfig.from_bindings(**{binding: value})

"""The components in examples/ train through main.py with no change to the package.

Short runs of examples/*.gin on the tiny store: the bindings below only shrink the model and the
run (store, window, sizes, epochs); the gin files' own ``import`` lines bring the components in.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import gin
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from generative_recommenders.config.registry import parse_gin
from generative_recommenders.config.run import RunOptions, preflight
from generative_recommenders.errors import UserInputError
from generative_recommenders.recommend.recommender import Recommender
from generative_recommenders.registry import LOSSES
from tests.training.conftest import REPO

SMALL = (
    'train_fn.dataset_name = "tiny"',
    "train_fn.max_sequence_length = 20",
    "train_fn.item_embedding_dim = 16",
    "train_fn.num_negatives = 8",
    "train_fn.local_batch_size = 16",
    "train_fn.eval_batch_size = 16",
    "train_fn.learning_rate = 1e-2",
    "train_fn.num_epochs = 3",
    'train_fn.eval_split = "test"',
)
HSTU_SMALL = ("hstu_encoder.dqk = 8", "hstu_encoder.dv = 8")


def _main(config: str, bindings: tuple[str, ...], tmp: pathlib.Path, data: pathlib.Path, *flags):
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "main.py"),
            f"--gin_config_file={config}",
            *[f"--gin_bindings={b}" for b in bindings],
            "--device=cpu",
            f"--data_dir={data}",
            f"--exp_dir={tmp / 'exps'}",
            f"--ckpt_dir={tmp / 'ckpts'}",
            *flags,
        ],
        cwd=REPO,  # as documented: run from the repository root
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _trained_run(tmp: pathlib.Path) -> tuple[pathlib.Path, list[float]]:
    (run_dir,) = [p for p in (tmp / "exps").glob("*/*") if p.is_dir()]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return run_dir, [event.value for event in events.Scalars("loss/train")]


def test_the_hinge_loss_trains_with_two_spawned_workers(tmp_path, tiny_data_dir) -> None:
    # Each spawned worker re-parses the gin file, so its import line runs in every worker.
    run = _main(
        "examples/custom_loss.gin",
        (*SMALL, *HSTU_SMALL),
        tmp_path,
        tiny_data_dir,
        "--nproc_per_node=2",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir, losses = _trained_run(tmp_path)
    assert "-hinge-m0.5-n8-" in run_dir.name
    assert len(losses) == 3 and losses[-1] < losses[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["num_users"] == 61
    assert "PairwiseHingeLoss.margin = 0.5" in (run_dir / "config.gin").read_text()


def test_the_gru_encoder_trains_through_main(tmp_path, tiny_data_dir, monkeypatch) -> None:
    run = _main("examples/custom_encoder.gin", SMALL, tmp_path, tiny_data_dir)
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir, losses = _trained_run(tmp_path)
    assert run_dir.name.split("-posi-")[1].startswith("d0.2-GRU4Rec-l1-d0-l2-dot-")
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert "GRU4Rec.num_layers = 1" in (run_dir / "config.gin").read_text()
    # The run folder rebuilds the encoder (its config.gin keeps the import line) and recommends
    # through the same query-encoding path as the evaluation.
    monkeypatch.chdir(REPO)
    try:
        top = Recommender.from_run(run_dir, data_dir=tiny_data_dir).recommend(["u1"], k=3)
    finally:
        gin.clear_config()
    assert len(top) == 3 and list(top["rank"]) == [1, 2, 3]


def test_a_module_in_the_working_directory_is_imported(tmp_path, monkeypatch) -> None:
    package = tmp_path / "my_losses"
    package.mkdir()
    source = (REPO / "examples" / "custom_loss.py").read_text()
    (package / "hinge_copy.py").write_text(
        source.replace('@LOSSES.register("PairwiseHingeLoss")', '@LOSSES.register("HingeCopy")')
    )
    config = tmp_path / "run.gin"
    config.write_text("import my_losses.hinge_copy\ntrain_fn.loss_module = 'HingeCopy'\n")
    monkeypatch.chdir(tmp_path)
    try:
        parse_gin([str(config)])
        assert "HingeCopy" in LOSSES
    finally:
        gin.clear_config()
        LOSSES.unregister("HingeCopy")  # other tests list the registered losses


def test_an_import_that_fails_is_one_line(tmp_path, tiny_data_dir) -> None:
    config = tmp_path / "run.gin"
    config.write_text("import examples.no_such_module\n")
    with pytest.raises(UserInputError) as caught:
        preflight(RunOptions(gin_config_files=(str(config),), data_dir=str(tiny_data_dir)))
    message = str(caught.value)
    assert "\n" not in message and "examples.no_such_module" in message

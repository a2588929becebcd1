"""The masked objective through main.py: DDP training and evaluation, and its bad bindings."""

from __future__ import annotations

import json
import math
import pathlib

import pytest

from tests.training.conftest import REPO, TINY_CONFIG, free_port
from tests.training.test_end_to_end import _dirs, _main, _one_line_error, _only_run

MASKED = '--gin_bindings=train_fn.objective = "masked"'


def test_masked_runs_evaluate_the_same_under_one_and_two_workers(tmp_path, tiny_data_dir) -> None:
    # A learning rate of 0 keeps the seeded initial weights (the two-worker run still trains:
    # forward, masked loss, DDP all-reduce of every gradient, mask token included).
    results = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        run = _main(
            [
                f"--gin_config_file={TINY_CONFIG}",
                MASKED,
                "--gin_bindings=train_fn.learning_rate = 0.0",
                "--gin_bindings=train_fn.num_epochs = 1",
                f"--nproc_per_node={workers}",
                "--device=cpu",
                f"--master_port={free_port()}",
                *_dirs(root, tiny_data_dir),
            ],
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        run_dir = _only_run(root / "exps")
        assert "-bidir-" in run_dir.name and "-masked-p0.2-" in run_dir.name
        results[workers] = json.loads((run_dir / "metrics.json").read_text())
    one, two = results[1]["test"], results[2]["test"]
    assert one.keys() == two.keys() and one["num_users"] == 61
    for key in one:
        assert math.isclose(one[key], two[key], rel_tol=1e-9, abs_tol=1e-12), key


def test_masked_hstu_learns_on_two_workers(tmp_path, tiny_data_dir) -> None:
    run = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            MASKED,
            "--gin_bindings=train_fn.num_epochs = 10",
            "--nproc_per_node=2",
            "--device=cpu",
            f"--master_port={free_port()}",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((_only_run(tmp_path / "exps") / "metrics.json").read_text())
    # The tiny users walk a ring of 40 items: chance is 10 / 40 at hr@10 (0.41 measured, seed 7).
    assert metrics["test"]["hr@10"] > 0.33


@pytest.mark.parametrize(
    "bindings, expected",
    [
        (["masked.mask_prob = 1.5"], "masked.mask_prob=1.5: expected a probability in (0, 1)"),
        (["masked.mask_prob = 0"], "masked.mask_prob=0"),
        (['train_fn.objective = "cloze"'], "train_fn.objective='cloze' is not one of"),
    ],
)
def test_bad_masked_bindings_are_one_line(tmp_path, tiny_data_dir, bindings, expected) -> None:
    objective = [] if "objective" in bindings[0] else [MASKED]
    run = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            *objective,
            *[f"--gin_bindings={b}" for b in bindings],
            *_dirs(tmp_path, tiny_data_dir),
        ],
        tmp_path,
    )
    assert expected in _one_line_error(run)


def test_mask_prob_without_the_masked_objective_is_refused(tmp_path, tiny_data_dir) -> None:
    run = _main(
        [
            f"--gin_config_file={TINY_CONFIG}",
            "--gin_bindings=masked.mask_prob = 0.3",
            *_dirs(tmp_path, tiny_data_dir),
        ],
        tmp_path,
    )
    line = _one_line_error(run)
    assert "masked.mask_prob=0.3" in line and "train_fn.objective='autoregressive'" in line


def test_an_encoder_that_cannot_be_bidirectional_is_refused(tmp_path, tiny_data_dir) -> None:
    run = _main(
        [
            f"--gin_config_file={REPO / 'examples' / 'custom_encoder.gin'}",
            MASKED,
            '--gin_bindings=train_fn.dataset_name = "tiny"',
            *_dirs(tmp_path, tiny_data_dir),
        ],
        REPO,
    )
    line = _one_line_error(run)
    assert "train_fn.objective='masked' needs an encoder that can attend bidirectionally" in line
    assert "GRU4Rec" in line


def test_a_masked_run_resumes_mid_epoch_with_the_same_losses(tmp_path, tiny_data_dir) -> None:
    # The masks are drawn from torch's generator, whose state the step checkpoint carries.
    from tests.training.test_long_runs import STEP_BINDINGS, _checkpoint_dir, _run, _scalars

    bindings = (*STEP_BINDINGS, 'train_fn.objective = "masked"')
    straight = _run(tmp_path / "straight", tiny_data_dir, *bindings)
    step6 = _checkpoint_dir(tmp_path / "straight") / "step6.pt"
    resumed = _run(tmp_path / "resumed", tiny_data_dir, *bindings, resume=str(step6))
    expected = _scalars(pathlib.Path(straight["run_dir"]), "losses/ar_loss")
    got = _scalars(pathlib.Path(resumed["run_dir"]), "losses/ar_loss")
    assert sorted(got) == list(range(7, 13))
    assert got == {step: expected[step] for step in got}  # bit-identical, step by step

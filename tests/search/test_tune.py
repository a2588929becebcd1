"""``python -m generative_recommenders.tune`` as a user runs it, on a local Ray instance."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from generative_recommenders.config.run import RunOptions, load_config
from generative_recommenders.search.commands import run_tune_flags
from tests.training.conftest import REPO, TINY_CONFIG, free_port

SPACE = (
    "train_fn.learning_rate: {loguniform: [3.0e-3, 3.0e-2]}\n"
    "train_fn.num_negatives: {choice: [8, 16]}\n"
)


def _tune(args: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "generative_recommenders.tune", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _args(tmp_path: pathlib.Path, data_dir: pathlib.Path, space: str, *extra: str) -> list[str]:
    path = tmp_path / "space.yaml"
    path.write_text(space)
    return [
        f"--gin_config_file={TINY_CONFIG}",
        f"--search_space={path}",
        f"--data_dir={data_dir}",
        f"--exp_dir={tmp_path / 'exps'}",
        "--cpus_per_trial=1",
        *extra,
    ]


def _rows(out: pathlib.Path) -> list[dict]:
    with open(out / "results.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _scalar_tags(run_root: pathlib.Path) -> set[str]:
    tags: set[str] = set()
    for events in run_root.rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags.update(accumulator.Tags()["scalars"])
    return tags


def test_search_reports_validation_writes_best_gin_and_tests_once(tmp_path, tiny_data_dir) -> None:
    args = _args(tmp_path, tiny_data_dir, SPACE, "--num_samples=2", "--max_epochs=2", "--name=s")
    result = _tune(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "exps" / "search" / "s"
    rows = _rows(out)
    assert len(rows) == 2
    for row in rows:
        assert row["status"] in ("finished", "stopped early"), row
        assert 0.0 < float(row["best_valid_ndcg@10"]) <= 1.0
        assert 1 <= int(row["epochs_run"]) <= 2
        if row["status"] == "finished":
            assert int(row["epochs_run"]) == 2
        assert 3e-3 <= float(row["train_fn.learning_rate"]) <= 3e-2
        assert row["train_fn.num_negatives"] in ("8", "16")
        # Each trial is an ordinary run: TensorBoard curves of the validation split, and never
        # a test evaluation (the test split is looked at once, for the best trial, at the end).
        tags = _scalar_tags(pathlib.Path(row["folder"]) / "exps")
        assert "eval_epoch_full/ndcg@10" in tags and "loss/train" in tags
        assert not any(tag.startswith("final_test") for tag in tags)
    best = max(rows, key=lambda r: float(r["best_valid_ndcg@10"]))
    summary = json.loads((out / "test_metrics.json").read_text())
    assert summary["best_trial"] == best["trial"]
    assert summary["valid"]["ndcg@10"] == pytest.approx(float(best["best_valid_ndcg@10"]))
    assert 0.0 <= summary["test"]["ndcg@10"] <= summary["test"]["hr@10"] <= 1.0
    assert "test (best checkpoint, once)" in result.stdout
    # best.gin is a config main.py can run: the search's protocol plus the best trial's values.
    config = load_config(RunOptions((str(out / "best.gin"),), ()))
    assert config.eval_split == "valid" and config.num_epochs == 2
    assert config.learning_rate == pytest.approx(float(best["train_fn.learning_rate"]))
    assert config.num_negatives == int(best["train_fn.num_negatives"])


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path, tiny_data_dir) -> None:
    # num_workers = -1 passes the configuration checks but makes the trial's loader raise.
    space = "create_data_loader.num_workers: {choice: [0, -1]}\n"
    args = _args(
        tmp_path, tiny_data_dir, space, "--num_samples=4", "--max_epochs=1", "--name=f",
        "--scheduler=fifo", "--seed=3",
    )  # fmt: skip
    result = _tune(args, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows(tmp_path / "exps" / "search" / "f")
    by_status = {row["status"] for row in rows}
    assert by_status == {"error", "finished"}, rows
    for row in rows:
        failed = row["create_data_loader.num_workers"] == "-1"
        assert (row["status"] == "error") == failed
        assert ("num_workers" in row["error"]) == failed
    # Resuming a search that has ended runs nothing again and gives the same table.
    resumed = _tune(args + ["--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _rows(tmp_path / "exps" / "search" / "f") == rows


def _flags(tmp_path: pathlib.Path, data_dir: pathlib.Path, space: str, **overrides):
    path = tmp_path / "space.yaml"
    path.write_text(space)
    values = dict(
        gin_config_file=[str(TINY_CONFIG)], gin_bindings=[], search_space=str(path),
        num_samples=2, max_epochs=1, scheduler="asha", metric="ndcg@10", cpus_per_trial=1.0,
        gpus_per_trial=0.0, name="bad", exp_dir=str(tmp_path / "exps"), data_dir=str(data_dir),
        resume=False, address="", seed=0, grace_period=1,
    )  # fmt: skip
    values.update(overrides)
    return SimpleNamespace(**values)


@pytest.mark.parametrize(
    "space, overrides, expected",
    [
        (SPACE, {"num_samples": 0}, "--num_samples=0: expected at least 1"),
        ("train_fn.learning_rat: {choice: [0.1]}\n", {}, "a parameter named 'learning_rat'"),
        ("train_fn.learning_rate: {uniform: [0.1, 0.01]}\n", {}, "low < high"),
        (SPACE, {"metric": "ndcg@7"}, "--metric='ndcg@7'"),
        (SPACE, {"address": "ray://127.0.0.1:PORT"}, "cannot reach the Ray cluster"),
        (SPACE, {"resume": True}, "no search to resume"),
        (SPACE, {"gin_bindings": ["train_fn.dataset_name = 'nope'"]}, "nope"),
    ],
)
def test_bad_input_stops_before_any_trial(
    tmp_path, tiny_data_dir, capsys, space, overrides, expected
) -> None:
    if "address" in overrides:
        overrides["address"] = overrides["address"].replace("PORT", str(free_port()))
    flags = _flags(tmp_path, tiny_data_dir, space, **overrides)
    assert run_tune_flags(flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not (tmp_path / "exps").exists()  # nothing started, nothing written

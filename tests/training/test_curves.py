"""curves.png: what the figure holds, that the file is a PNG, and that a failure never stops a run."""

from __future__ import annotations

import json
import pathlib

import matplotlib.image
import numpy as np
import pytest

from generative_recommenders.config.run import RunOptions, run_training
from generative_recommenders.training.curves import CURVES_FILE, build_figure, write_curves
from generative_recommenders.training.launch import Topology
from generative_recommenders.training.run_logging import RunLogger
from tests.training.conftest import TINY_CONFIG, free_port

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
METRICS = {"hr@10": 0.2, "ndcg@10": 0.1, "mrr": 0.05, "num_users": 61}
HISTORY = [
    {"epoch": 0, "loss": 5.0, "lr": 1e-3},
    {"epoch": 1, "loss": 4.0, "lr": 1e-3, **METRICS},
    {"epoch": 2, "loss": 3.5, "lr": 5e-4},
    {"epoch": 3, "loss": 3.2, "lr": 5e-4, **{**METRICS, "hr@10": 0.3}},
]


def assert_png(path: pathlib.Path) -> np.ndarray:
    """A real PNG: the signature, and pixels that decode to an image that is not blank."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 300
    assert np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0).shape[0] > 10
    return pixels


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def test_figure_has_loss_metrics_lr_and_the_best_epoch():
    fig = build_figure(HISTORY, best_epoch=3, eval_split="valid", final_test={"hr@10": 0.25})
    loss_ax, metric_ax, lr_ax = fig.axes
    assert "loss" in loss_ax.get_title() and "valid" in metric_ax.get_title()
    assert "learning rate" in lr_ax.get_title()
    loss_line = loss_ax.get_lines()[0]
    assert loss_line.get_xdata().tolist() == [0, 1, 2, 3]
    assert loss_line.get_ydata().tolist() == [5.0, 4.0, 3.5, 3.2]
    assert _labels(metric_ax)[:4] == [
        "valid hr@10",
        "test hr@10 (best ckpt)",
        "valid ndcg@10",
        "valid mrr",
    ]
    hr = metric_ax.get_lines()[0]
    assert hr.get_xdata().tolist() == [1, 3] and hr.get_ydata().tolist() == [0.2, 0.3]
    assert lr_ax.get_lines()[0].get_ydata().tolist() == [1e-3, 1e-3, 5e-4, 5e-4]
    for ax in fig.axes:  # the best epoch, marked in every panel
        best = [line for line in ax.get_lines() if line.get_label() == "best epoch"]
        assert len(best) == 1 and list(best[0].get_xdata()) == [3, 3]


def test_test_protocol_labels_and_no_best_epoch_yet():
    fig = build_figure(HISTORY[:1], best_epoch=-1, eval_split="test")
    assert "test" in fig.axes[1].get_title()
    assert all("best epoch" not in _labels(ax) for ax in fig.axes)


def test_write_curves_writes_a_png_atomically(tmp_path):
    path = tmp_path / CURVES_FILE
    write_curves(path, HISTORY, 3, "valid", {"hr@10": 0.25, "ndcg@10": 0.12, "mrr": 0.06})
    assert_png(path)
    assert [p.name for p in tmp_path.iterdir()] == [CURVES_FILE]  # no temporary left


def test_a_bad_history_entry_is_a_warning_not_a_crash(tmp_path, caplog):
    bad = [*HISTORY, {"epoch": 4, "loss": "nan?", "lr": 1e-3}]
    with pytest.raises(TypeError, match="history epoch 4: loss is 'nan\\?'"):
        write_curves(tmp_path / CURVES_FILE, bad, 3, "valid")
    logger = RunLogger(tmp_path / "run", active=True)
    try:
        with caplog.at_level("WARNING"):
            logger.curves(bad, 3, "valid")
    finally:
        logger.close()
    assert any("could not write" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "run" / CURVES_FILE).exists()
    inactive = RunLogger(tmp_path / "other", active=False)  # ranks > 0 write nothing
    inactive.curves(HISTORY, 3, "valid")
    assert not (tmp_path / "other").exists()


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


def test_one_worker_run_writes_curves_and_survives_an_unwritable_one(
    tmp_path, tiny_data_dir, capfd
):
    first = _run(
        tmp_path, tiny_data_dir, "train_fn.num_epochs = 1", 'train_fn.eval_split = "valid"'
    )
    run_dir = pathlib.Path(first["run_dir"])
    assert_png(run_dir / CURVES_FILE)
    # Make the picture impossible to write for real: a non-empty folder holds its name. The
    # resumed run must still train, evaluate and write metrics.json, with one warning per try.
    (run_dir / CURVES_FILE).unlink()
    (run_dir / CURVES_FILE).mkdir()
    (run_dir / CURVES_FILE / "keep").write_text("x")
    capfd.readouterr()
    resumed = _run(
        tmp_path, tiny_data_dir, "train_fn.num_epochs = 2", 'train_fn.eval_split = "valid"',
        resume="latest",
    )  # fmt: skip
    assert resumed["run_dir"] == str(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "valid" and 0.0 <= metrics["test"]["hr@10"] <= 1.0
    err = capfd.readouterr().err
    assert (
        err.count(
            f"WARNING generative_recommenders.training.run_logging: could not write {run_dir / CURVES_FILE}"
        )
        == 2
    )
    assert (run_dir / CURVES_FILE).is_dir()

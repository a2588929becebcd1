"""``train_fn.kernels``: the one binding that picks the ops implementations."""

from __future__ import annotations

import pathlib

import gin
import pytest

from generative_recommenders.config.run import RunOptions, preflight, run_training
from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions
from generative_recommenders.errors import UserInputError
from generative_recommenders.ops import kernels
from generative_recommenders.training.launch import Topology
from tests.training.conftest import TINY_CONFIG, free_port, run_main, write_tiny_events

EXPECTED_ERROR = "train_fn.kernels='triton' is not one of: auto, reference, chunked, fbgemm, fused"


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("kernels_store")
    write_tiny_events(root / "events.csv")
    preprocess(
        "csv", SourceOptions(data_dir=root / "data", input_file=root / "events.csv", name="tiny")
    )
    return root / "data"


def test_unknown_name_is_refused_before_any_worker_starts(tmp_path: pathlib.Path) -> None:
    options = RunOptions(
        gin_config_files=(str(TINY_CONFIG),),
        gin_bindings=('train_fn.kernels = "triton"',),
        data_dir=str(tmp_path),  # no store there: the choice is checked first
    )
    with pytest.raises(UserInputError) as caught:
        preflight(options)
    assert str(caught.value) == EXPECTED_ERROR


def test_main_py_exits_2_with_one_line(tmp_path: pathlib.Path) -> None:
    result = run_main(
        tmp_path,
        f"--gin_config_file={TINY_CONFIG}",
        "--gin_bindings=train_fn.kernels = 'triton'",
        "--device=cpu",
        f"--data_dir={tmp_path}",
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {EXPECTED_ERROR}"
    assert "Traceback" not in result.stderr


def _tiny_config(root: pathlib.Path, main_module: str) -> pathlib.Path:
    """The tiny HSTU config, or the same run with a tiny SASRec (its own encoder bindings: an
    unselected encoder's bindings are refused)."""
    if main_module == "HSTU":
        return TINY_CONFIG
    lines = [
        line
        for line in TINY_CONFIG.read_text().splitlines()
        if not line.startswith(("hstu_encoder.", "train_fn.main_module"))
    ]
    lines += [
        f"train_fn.main_module = {main_module!r}",
        "sasrec_encoder.num_blocks = 1",
        "sasrec_encoder.num_heads = 2",
        "sasrec_encoder.ffn_hidden_dim = 16",
    ]
    path = root / f"tiny-{main_module}.gin"
    path.write_text("\n".join(lines) + "\n")
    return path


def _train(root: pathlib.Path, data_dir: pathlib.Path, choice: str, main_module: str) -> dict:
    options = RunOptions(
        gin_config_files=(str(_tiny_config(root, main_module)),),
        gin_bindings=(
            f"train_fn.kernels = {choice!r}",
            "train_fn.num_epochs = 2",
        ),
        data_dir=str(data_dir),
        exp_dir=str(root / choice / "exps"),
        ckpt_dir=str(root / choice / "ckpts"),
    )
    with kernels.using(kernels.AUTO):  # the run selects its kernels process-wide; restore after
        return run_training(options, Topology("127.0.0.1", free_port(), 1, 1, 0, "cpu"))


@pytest.mark.parametrize("main_module", ["HSTU", "SASRec"])
def test_reference_trains_and_evaluates_like_auto(
    tmp_path: pathlib.Path, tiny_store: pathlib.Path, main_module: str
) -> None:
    """Same seed, same data: the reference formulas reach the fused kernels' metrics up to
    floating-point noise (the dropout masks are the same draws)."""
    auto = _train(tmp_path, tiny_store, "auto", main_module)
    gin.clear_config()
    reference = _train(tmp_path, tiny_store, "reference", main_module)
    assert kernels.current() == kernels.AUTO
    assert set(auto["test"]) == set(reference["test"]) and auto["test"]["hr@10"] > 0
    for name, value in auto["test"].items():
        assert reference["test"][name] == pytest.approx(value, abs=0.02), name

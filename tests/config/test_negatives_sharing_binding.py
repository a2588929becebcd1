"""``train_fn.negatives_sharing``: validation, the loss it builds, and a tiny main.py run."""

from __future__ import annotations

import pathlib

import gin
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from generative_recommenders.config.choices import UnknownChoiceError
from generative_recommenders.config.objective import build_loss
from generative_recommenders.config.registry import parse_gin
from generative_recommenders.config.run import RunOptions, preflight
from generative_recommenders.config.train import train_fn
from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.losses import BCELoss, SampledSoftmaxLoss
from generative_recommenders.modeling.negatives import NegativesSharing
from tests.training.conftest import TINY_CONFIG, run_main, write_tiny_events

EXPECTED_ERROR = "train_fn.negatives_sharing='col' is not one of: none, row, batch"


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def test_unknown_value_is_one_line_naming_the_binding_and_the_choices() -> None:
    parse_gin([], ['train_fn.negatives_sharing = "col"'])
    with pytest.raises(UnknownChoiceError) as caught:
        train_fn()
    assert str(caught.value) == EXPECTED_ERROR
    assert isinstance(caught.value, ValueError)


def test_unknown_value_is_refused_before_any_worker_starts(tmp_path: pathlib.Path) -> None:
    options = RunOptions(
        gin_config_files=(str(TINY_CONFIG),),
        gin_bindings=('train_fn.negatives_sharing = "col"',),
        data_dir=str(tmp_path),  # no store there: the choice is checked first
    )
    with pytest.raises(UserInputError) as caught:
        preflight(options)
    assert str(caught.value) == EXPECTED_ERROR and "\n" not in str(caught.value)


def test_the_default_is_none_and_builds_independent_draws() -> None:
    parse_gin([str(TINY_CONFIG)])
    config = train_fn()
    assert config.negatives_sharing == "none"
    loss = build_loss(config.objective, config.explicit, set())
    assert loss.negatives_sharing is NegativesSharing.NONE


@pytest.mark.parametrize("value", ["none", "row", "batch"])
@pytest.mark.parametrize("loss_module", ["SampledSoftmaxLoss", "BCELoss"])
def test_each_value_reaches_the_loss(value: str, loss_module: str) -> None:
    parse_gin(
        [], [f"train_fn.negatives_sharing = {value!r}", f"train_fn.loss_module = {loss_module!r}"]
    )
    config = train_fn()
    loss = build_loss(config.objective, config.explicit, set())
    assert isinstance(loss, SampledSoftmaxLoss if loss_module == "SampledSoftmaxLoss" else BCELoss)
    assert loss.negatives_sharing is NegativesSharing(value)


def test_main_trains_the_tiny_hstu_with_batch_sharing(tmp_path: pathlib.Path) -> None:
    """python main.py on a tiny store, one draw of negatives per step: the loss falls (~6 s)."""
    write_tiny_events(tmp_path / "events.csv")
    preprocess(
        "csv",
        SourceOptions(data_dir=tmp_path / "data", input_file=tmp_path / "events.csv", name="tiny"),
    )
    result = run_main(
        tmp_path,
        f"--gin_config_file={TINY_CONFIG}",
        "--gin_bindings=train_fn.negatives_sharing = 'batch'",
        "--gin_bindings=train_fn.num_epochs = 2",
        "--gin_bindings=train_fn.eval_interval = 0",
        "--device=cpu",
        f"--data_dir={tmp_path / 'data'}",
        f"--exp_dir={tmp_path / 'exps'}",
        f"--ckpt_dir={tmp_path / 'ckpts'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = [p for p in (tmp_path / "exps").glob("*/*") if p.is_dir()]
    assert "share_batch" in run_dir.name
    assert "train_fn.negatives_sharing = 'batch'" in (run_dir / "config.gin").read_text()
    events = EventAccumulator(str(run_dir))
    events.Reload()
    epoch_losses = [event.value for event in events.Scalars("loss/train")]
    assert len(epoch_losses) == 2 and epoch_losses[1] < epoch_losses[0]

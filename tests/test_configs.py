"""Every gin file in configs/ parses against the code and yields a valid TrainConfig."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from generative_recommenders.config.registry import parse_gin
from generative_recommenders.config.train import TrainConfig, train_fn
from generative_recommenders.errors import UserInputError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.gin"))


def test_there_are_the_papers_twelve_settings_and_more() -> None:
    paper = [p for p in CONFIGS if p.parent.name in {"ml-1m", "ml-20m", "amzn-books", "ml-3b"}]
    assert len([p for p in paper if "mol" not in p.name]) == 12


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses_and_validates(path: Path) -> None:
    parse_gin([str(path)])
    config = train_fn()
    assert isinstance(config, TrainConfig)
    assert config.dataset_name
    assert config.main_module in {"SASRec", "HSTU"}


def test_train_fn_parameters_are_exactly_the_config_fields() -> None:
    parameters = list(inspect.signature(train_fn.__wrapped__).parameters)
    assert parameters == list(TrainConfig.__dataclass_fields__)


def test_unknown_binding_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gin"
    bad.write_text("train_fn.no_such_setting = 3\n")
    with pytest.raises(UserInputError) as error:
        parse_gin([str(bad)])
    message = str(error.value)
    assert "\n" not in message
    assert str(bad) in message and "no_such_setting" in message


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="not found"):
        parse_gin([str(tmp_path / "absent.gin")])


def test_bad_choice_names_the_binding() -> None:
    parse_gin([], ['train_fn.eval_split = "validation"'])
    with pytest.raises(ValueError, match="train_fn.eval_split='validation' is not one of"):
        train_fn()

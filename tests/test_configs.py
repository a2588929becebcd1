"""Every gin file in configs/ parses against the code and yields a valid TrainConfig."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from generative_recommenders.config.registry import parse_gin
from generative_recommenders.config.train import SECTIONS, TrainConfig, train_fn
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


# The paper's train_fn binding names (its public trainer), each declared by exactly one section.
PAPER_NAMES = """dataset_name max_sequence_length positional_sampling_ratio local_batch_size eval_batch_size
eval_user_max_batch_size main_module main_module_bf16 dropout_rate user_embedding_norm
sampling_strategy loss_module loss_weights num_negatives loss_activation_checkpoint item_l2_norm
temperature num_epochs learning_rate num_warmup_steps weight_decay top_k_method eval_interval
full_eval_every_n save_ckpt_every_n partial_eval_num_iters embedding_module_type item_embedding_dim
interaction_module_type gr_output_length l2_norm_eps enable_tf32 random_seed""".split()


def test_every_setting_is_declared_by_one_section() -> None:
    declared = [f.name for cls in SECTIONS.values() for f in dataclasses.fields(cls)]
    assert len(declared) == len(set(declared))
    assert set(PAPER_NAMES) <= set(declared)
    parse_gin([])
    config = train_fn(learning_rate=0.5, dataset_name="x")
    assert config.learning_rate == config.schedule.learning_rate == 0.5
    assert config.explicit == {"learning_rate", "dataset_name"}
    assert set(config.to_dict()) == set(declared)


def test_a_name_declared_twice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclasses.dataclass(frozen=True)
    class Clash:
        learning_rate: float = 1.0

    monkeypatch.setitem(SECTIONS, "clash", Clash)
    with pytest.raises(RuntimeError, match="train_fn.learning_rate is declared by both"):
        train_fn()


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

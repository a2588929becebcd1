"""The search space file: its shape, and every binding checked against the real configuration."""

from __future__ import annotations

import pathlib

import pytest

from generative_recommenders.errors import UserInputError
from generative_recommenders.search.space import (
    Distribution,
    binding_line,
    check_space,
    gin_literal,
    load_search_space,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "tiny" / "hstu.gin")


def _space(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_each_kind_parses_with_yaml_quirks(tmp_path) -> None:
    path = _space(
        tmp_path,
        "train_fn.learning_rate: {loguniform: [1e-4, 1.0e-2]}\n"
        "train_fn.dropout_rate: {uniform: [0.0, 0.5]}\n"
        "train_fn.num_negatives: {choice: [8, 16]}\n"
        "hstu_encoder.num_blocks: {randint: [1, 3]}\n"
        'train_fn.sampling_strategy: {choice: ["local", "in-batch"]}\n',
    )
    space = load_search_space(path)
    assert space == [
        Distribution("train_fn.learning_rate", "loguniform", (1e-4, 1e-2)),
        Distribution("train_fn.dropout_rate", "uniform", (0.0, 0.5)),
        Distribution("train_fn.num_negatives", "choice", (8, 16)),
        Distribution("hstu_encoder.num_blocks", "randint", (1, 3)),
        Distribution("train_fn.sampling_strategy", "choice", ("local", "in-batch")),
    ]
    # randint's upper bound is excluded, so its largest value is high - 1.
    assert space[3].probe_values() == (1, 2)
    check_space(space, [TINY], [], path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train_fn.learning_rate: {loguniform: [0.01, 0.001]}", "low < high"),
        ("train_fn.learning_rate: {loguniform: [0.0, 0.1]}", "low > 0"),
        ("train_fn.learning_rate: {uniform: [0.1]}", "[low, high]"),
        ("train_fn.learning_rate: {uniform: [a, 0.1]}", "finite numbers"),
        ("train_fn.learning_rate: {normal: [0, 1]}", "unknown distribution 'normal'"),
        ("train_fn.learning_rate: 0.1", "expected one of"),
        ("hstu_encoder.num_blocks: {randint: [1.5, 3]}", "integers"),
        ("train_fn.num_negatives: {choice: []}", "non-empty list"),
        ("learning_rate: {choice: [1]}", "gin binding name"),
        ("- a\n- b", "expected a mapping"),
        ("a: [", "not valid YAML"),
    ],
)
def test_malformed_space_is_one_line_naming_the_file(tmp_path, text, expected) -> None:
    path = _space(tmp_path, text + "\n")
    with pytest.raises(UserInputError) as caught:
        load_search_space(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train_fn.learning_rat: {choice: [0.1]}", "doesn't have a parameter named 'learning_rat'"),
        ("trainfn.learning_rate: {choice: [0.1]}", "No configurable matching 'trainfn'"),
        ("train_fn.num_negatives: {choice: [8, 0]}", "train_fn.num_negatives = 0"),
        ("train_fn.loss_module: {choice: [SampledSoftmaxLoss, Nope]}", "'Nope' is not one of"),
        ("train_fn.positional_sampling_ratio: {uniform: [0.5, 2.0]}", "(0, 1]"),
    ],
)
def test_bindings_are_checked_against_the_configuration(tmp_path, text, expected) -> None:
    path = _space(tmp_path, text + "\n")
    with pytest.raises(UserInputError) as caught:
        check_space(load_search_space(path), [TINY], [], path)
    message = str(caught.value)
    assert message.startswith(str(path)) and expected in message, message
    assert "\n" not in message


def test_gin_literals_round_trip_through_gin() -> None:
    from generative_recommenders.config.run import RunOptions, load_config

    assert gin_literal("local") == "'local'" and gin_literal(True) == "True"
    assert binding_line("train_fn.learning_rate", 1e-05) == "train_fn.learning_rate = 1e-05"
    options = RunOptions(
        (TINY,),
        (
            binding_line("train_fn.learning_rate", 1e-05),
            binding_line("train_fn.sampling_strategy", "in-batch"),
        ),
    )
    config = load_config(options)
    assert config.learning_rate == 1e-05 and config.sampling_strategy == "in-batch"

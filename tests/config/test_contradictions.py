"""Contradictory or unused bindings are refused in one line; run names tell configurations apart."""

from __future__ import annotations

import pathlib

import gin
import pytest

from generative_recommenders.config.build import validate
from generative_recommenders.config.run import (
    RunOptions,
    _resume_path,
    load_config,
    preflight,
    run_training,
)
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError
from generative_recommenders.training.launch import Topology
from tests.training.conftest import TINY_CONFIG, free_port, run_main

MOL = (
    'train_fn.interaction_module_type = "MoL"',
    "create_mol_interaction_module.dot_product_dimension = 4",
    "create_mol_interaction_module.query_dot_product_groups = 2",
    "create_mol_interaction_module.item_dot_product_groups = 2",
    "create_mol_interaction_module.query_hidden_dim = 8",
)


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def _options(data_dir: pathlib.Path, *bindings: str) -> RunOptions:
    return RunOptions(
        gin_config_files=(str(TINY_CONFIG),), gin_bindings=bindings, data_dir=str(data_dir)
    )


def _refusal(data_dir: pathlib.Path, *bindings: str) -> str:
    with pytest.raises(UserInputError) as caught:
        preflight(_options(data_dir, *bindings))
    message = str(caught.value)
    assert "\n" not in message
    return message


def _prefix(data_dir: pathlib.Path, *bindings: str) -> str:
    options = _options(data_dir, *bindings)
    config = load_config(options)
    return validate(config, SequenceStore.open(data_dir, config.dataset_name))


def test_bce_with_an_explicit_temperature_names_both_bindings(tiny_data_dir) -> None:
    # configs/tiny/hstu.gin binds train_fn.temperature = 0.05 explicitly.
    message = _refusal(tiny_data_dir, 'train_fn.loss_module = "BCELoss"')
    assert "train_fn.temperature=0.05" in message
    assert "train_fn.loss_module='BCELoss'" in message


def test_bce_takes_the_default_or_an_explicit_one(tiny_data_dir) -> None:
    # Unbound, the loss's own temperature applies (BCE: 1.0); an explicit 1.0 agrees with it.
    assert "bce-t1" in _prefix(
        tiny_data_dir,
        'train_fn.loss_module = "BCELoss"',
        "train_fn.temperature = 1.0",
        "train_fn.num_negatives = None",  # tiny binds 16, which BCE (one negative) would not take
    )


def test_the_sampled_softmax_default_temperature_is_its_own(tmp_path, tiny_data_dir) -> None:
    # Without a binding, the sampled softmax uses its constructor's 0.05 (and says so in the name).
    config_file = tmp_path / "no_temperature.gin"
    config_file.write_text(
        "\n".join(
            line
            for line in TINY_CONFIG.read_text().splitlines()
            if not line.startswith("train_fn.temperature")
        )
    )
    options = RunOptions(gin_config_files=(str(config_file),), data_dir=str(tiny_data_dir))
    config = load_config(options)
    assert config.temperature is None
    assert "ssl-t0.05-n16" in validate(config, SequenceStore.open(tiny_data_dir, "tiny"))


def test_a_zero_temperature_is_one_line(tiny_data_dir) -> None:
    message = _refusal(tiny_data_dir, "train_fn.temperature = 0.0")
    assert "train_fn.temperature=0.0" in message and "temperature must be > 0" in message


def test_mol_bindings_with_a_dot_product_are_refused(tiny_data_dir) -> None:
    message = _refusal(tiny_data_dir, "create_mol_interaction_module.temperature = 0.1")
    assert "create_mol_interaction_module.temperature=0.1" in message
    assert "train_fn.interaction_module_type='DotProduct'" in message


def test_another_encoders_bindings_are_refused(tiny_data_dir) -> None:
    message = _refusal(tiny_data_dir, "sasrec_encoder.num_blocks = 3")
    assert "sasrec_encoder.num_blocks=3" in message and "train_fn.main_module='HSTU'" in message


def test_a_binding_no_component_takes_is_refused(tiny_data_dir) -> None:
    message = _refusal(
        tiny_data_dir,
        'train_fn.loss_module = "BCELoss"',
        "train_fn.temperature = 1.0",  # tiny binds 0.05; agree with BCE so num_negatives is left
    )
    assert "train_fn.num_negatives=16" in message and "BCELoss" in message


def test_the_same_setting_bound_twice_is_refused(tiny_data_dir) -> None:
    message = _refusal(tiny_data_dir, "SampledSoftmaxLoss.temperature = 0.1")
    assert "train_fn.temperature=0.05" in message
    assert "SampledSoftmaxLoss.temperature=0.1" in message


def test_an_unknown_component_lists_the_registered_ones(tiny_data_dir) -> None:
    message = _refusal(tiny_data_dir, 'train_fn.loss_module = "Hinge"')
    assert "train_fn.loss_module='Hinge' is not one of: SampledSoftmaxLoss, BCELoss" in message


@pytest.mark.parametrize(
    "bindings, expected",
    [
        (("train_fn.temperature = 0.0",), "train_fn.temperature=0.0"),
        (('train_fn.loss_module = "BCELoss"',), "contradicts train_fn.loss_module='BCELoss'"),
        (("create_mol_interaction_module.temperature = 0.1",), "interaction_module_type"),
        (("train_fn.learning_rat = 0.1",), "did you mean learning_rate"),
    ],
)
def test_main_ends_a_bad_binding_with_one_line_and_exit_2(
    tmp_path, tiny_data_dir, bindings, expected
) -> None:
    run = run_main(
        tmp_path,
        f"--gin_config_file={TINY_CONFIG}",
        *[f"--gin_bindings={binding}" for binding in bindings],
        f"--data_dir={tiny_data_dir}",
        f"--exp_dir={tmp_path / 'exps'}",
        f"--ckpt_dir={tmp_path / 'ckpts'}",
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert lines[-1].startswith("error: ") and expected in lines[-1], lines[-1]


def test_run_names_differ_in_every_model_and_objective_choice(tiny_data_dir) -> None:
    names = {
        "dot": _prefix(tiny_data_dir),
        "mol": _prefix(tiny_data_dir, *MOL),
        "t0.1": _prefix(tiny_data_dir, "train_fn.temperature = 0.1"),
        "n8": _prefix(tiny_data_dir, "train_fn.num_negatives = 8"),
        "bce": _prefix(
            tiny_data_dir,
            'train_fn.loss_module = "BCELoss"',
            "train_fn.temperature = 1.0",
            "train_fn.num_negatives = None",
        ),
        "in-batch": _prefix(tiny_data_dir, 'train_fn.sampling_strategy = "in-batch"'),
        "no-l2": _prefix(tiny_data_dir, "train_fn.item_l2_norm = False"),
        "ln": _prefix(tiny_data_dir, 'train_fn.user_embedding_norm = "layer_norm"'),
        "dim": _prefix(tiny_data_dir, "train_fn.item_embedding_dim = 8"),
        "blocks": _prefix(tiny_data_dir, "hstu_encoder.num_blocks = 2"),
        "weights": _prefix(tiny_data_dir, *MOL, "train_fn.loss_weights = {'mi_loss': 0.1}"),
    }
    assert len(set(names.values())) == len(names), names
    for a, name_a in names.items():
        for b, name_b in names.items():
            assert a == b or not name_b.startswith(name_a + "-"), (a, b)
    assert "MoL-2x2x4" in names["mol"] and "-dot-" in names["dot"]
    assert "ssl-t0.1-n16" in names["t0.1"] and "ssl-t0.05-n8" in names["n8"]


def test_resume_latest_never_picks_another_configuration(tmp_path) -> None:
    prefix = "HSTU-x-dot-ssl-t0.05-n16-s7"
    group = tmp_path / "ckpts" / "tiny-l20"
    other = group / f"{prefix}-valid-2026-01-01-000000"  # longer name, same start
    other_mol = group / "HSTU-x-MoL-2x2x4-ssl-t0.05-n16-s7-2026-01-01-000000"
    for folder in (other, other_mol):
        folder.mkdir(parents=True)
        (folder / "last.pt").write_bytes(b"")
    options = RunOptions(gin_config_files=(), ckpt_dir=str(tmp_path / "ckpts"), resume="latest")
    with pytest.raises(UserInputError, match="no checkpoint of this configuration"):
        _resume_path(options, "tiny-l20", prefix)
    own = group / f"{prefix}-2026-01-02-000000"
    own.mkdir()
    (own / "last.pt").write_bytes(b"")
    assert _resume_path(options, "tiny-l20", prefix) == own / "last.pt"


def _train(root: pathlib.Path, data_dir: pathlib.Path, *bindings: str, resume=None) -> dict:
    options = RunOptions(
        gin_config_files=(str(TINY_CONFIG),),
        gin_bindings=("train_fn.num_epochs = 1", "train_fn.eval_interval = 0", *bindings),
        data_dir=str(data_dir),
        exp_dir=str(root / "exps"),
        ckpt_dir=str(root / "ckpts"),
        resume=resume,
    )
    return run_training(options, Topology("127.0.0.1", free_port(), 1, 1, 0, "cpu"))


def test_a_trained_run_is_never_resumed_under_another_configuration(tmp_path, tiny_data_dir):
    dot = _train(tmp_path, tiny_data_dir)
    dot_dir = pathlib.Path(dot["run_dir"])
    with pytest.raises(UserInputError, match="no checkpoint of this configuration"):
        _train(tmp_path, tiny_data_dir, *MOL, resume="latest")
    checkpoints = tmp_path / "ckpts" / dot_dir.parent.name / dot_dir.name
    with pytest.raises(UserInputError, match="configuration .* differs from this one"):
        _train(tmp_path, tiny_data_dir, *MOL, resume=str(checkpoints))
    # The same configuration finds its own run (one more epoch on top of the first).
    resumed = _train(tmp_path, tiny_data_dir, "train_fn.num_epochs = 2", resume="latest")
    assert pathlib.Path(resumed["run_dir"]) == dot_dir


def test_a_fixed_value_bound_under_the_components_name_is_refused(tiny_data_dir) -> None:
    message = _refusal(
        tiny_data_dir,
        'train_fn.loss_module = "BCELoss"',
        "train_fn.temperature = 1.0",
        "train_fn.num_negatives = None",
        "BCELoss.temperature = 0.5",
    )
    assert "BCELoss.temperature=0.5" in message and "train_fn.loss_module='BCELoss'" in message

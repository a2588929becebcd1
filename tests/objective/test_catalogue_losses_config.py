"""FullSoftmaxLoss, BPRLoss and GBCELoss through the real config path: built by name from gin
bindings, a few training steps, run names, and their bad bindings refused in one line."""

from __future__ import annotations

import gin
import pytest
import torch

from generative_recommenders.config.build import build_components, store_item_counts, validate
from generative_recommenders.config.run import RunOptions, load_config, preflight
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.bpr_loss import BPRLoss
from generative_recommenders.modeling.full_softmax_loss import FullSoftmaxLoss
from generative_recommenders.modeling.gbce_loss import GBCELoss
from generative_recommenders.training.inputs import EncoderInputs
from tests.training.conftest import (
    TINY_CONFIG,
    run_main,
    tiny_data_dir,  # noqa: F401 (fixture)
)

# configs/tiny/hstu.gin binds train_fn.num_negatives = 16 and train_fn.temperature = 0.05.
LOSSES = {
    "FullSoftmaxLoss": (FullSoftmaxLoss, ("train_fn.num_negatives = None",), "-ce-t0.05-"),
    "BPRLoss": (BPRLoss, (), "-bpr-t0.05-n16-"),
    "GBCELoss": (GBCELoss, ("GBCELoss.t = 0.5",), "-gbce-t0.5-n16-temp0.05-"),
}


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def _options(data_dir, *bindings: str) -> RunOptions:  # noqa: ANN001
    return RunOptions(
        gin_config_files=(str(TINY_CONFIG),), gin_bindings=bindings, data_dir=str(data_dir)
    )


def _batch(max_item_id: int, seed: int) -> EncoderInputs:
    """4 users, histories of 3..20 items, the target written at each length (as in training)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([3, 20, 11, 7])
    ids = torch.randint(1, max_item_id + 1, (4, 21), generator=gen)
    ids[torch.arange(21).unsqueeze(0) > lengths.unsqueeze(1)] = 0
    timestamps = torch.arange(21).repeat(4, 1) * 60 + 1_000_000
    return EncoderInputs(
        lengths=lengths,
        ids=ids,
        timestamps=timestamps,
        ratings=torch.ones(4, 21),
        user_ids=torch.arange(1, 5),
    )


@pytest.mark.parametrize("objective", ["autoregressive", "masked"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_the_loss_builds_by_name_and_trains(tiny_data_dir, name, objective):  # noqa: F811
    cls, bindings, _ = LOSSES[name]
    config = load_config(
        _options(
            tiny_data_dir,
            f'train_fn.loss_module = "{name}"',
            f'train_fn.objective = "{objective}"',
            *bindings,
        )
    )
    store = SequenceStore.open(tiny_data_dir, "tiny")
    catalogue = torch.as_tensor(store.catalogue_item_ids(), dtype=torch.int64)
    torch.manual_seed(0)
    parts = build_components(
        config, store.max_item_id, catalogue, torch.device("cpu"), store_item_counts(config, store)
    )
    assert type(parts.loss) is cls
    table = parts.encoder.get_item_embeddings(catalogue).detach().clone()
    optimizer = torch.optim.Adam(parts.model.parameters(), lr=1e-2)
    losses = []
    for step in range(3):
        total, main, _ = parts.model(_batch(store.max_item_id, seed=step))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(float(main))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert len(set(losses)) == 3
    moved = parts.encoder.get_item_embeddings(catalogue).detach() - table
    assert float(moved.abs().sum()) > 0  # the item table learns from this loss


@pytest.mark.parametrize("name", list(LOSSES))
def test_run_names_name_the_loss(tiny_data_dir, name):  # noqa: F811
    _, bindings, expected = LOSSES[name]
    config = load_config(_options(tiny_data_dir, f'train_fn.loss_module = "{name}"', *bindings))
    assert expected in validate(config, SequenceStore.open(tiny_data_dir, "tiny"))


def _refusal(data_dir, *bindings: str) -> str:  # noqa: ANN001
    with pytest.raises(UserInputError) as caught:
        preflight(_options(data_dir, *bindings))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_full_softmax_with_a_number_of_negatives_is_refused(tiny_data_dir):  # noqa: F811
    message = _refusal(
        tiny_data_dir, 'train_fn.loss_module = "FullSoftmaxLoss"', "train_fn.num_negatives = 128"
    )
    assert "train_fn.num_negatives=128" in message and "FullSoftmaxLoss" in message


@pytest.mark.parametrize(
    "bindings, expected",
    [
        (
            ('train_fn.loss_module = "GBCELoss"', "GBCELoss.t = 1.5"),
            "GBCELoss.t=1.5: expected 0 <= t <= 1",
        ),
        (
            ('train_fn.loss_module = "BPRLoss"', "train_fn.temperature = 0.0"),
            "temperature must be > 0",
        ),
        (
            ('train_fn.loss_module = "FullSoftmaxLoss"', "train_fn.temperature = -1.0",
             "train_fn.num_negatives = None"),
            "temperature must be > 0",
        ),
    ],
)  # fmt: skip
def test_bad_settings_are_one_line(tiny_data_dir, bindings, expected):  # noqa: F811
    message = _refusal(tiny_data_dir, *bindings)
    assert expected in message and bindings[0].split(" = ")[1].strip('"') in message


def test_main_ends_a_bad_t_with_one_line_and_exit_2(tmp_path, tiny_data_dir):  # noqa: F811
    run = run_main(
        tmp_path,
        f"--gin_config_file={TINY_CONFIG}",
        '--gin_bindings=train_fn.loss_module = "GBCELoss"',
        "--gin_bindings=GBCELoss.t = 1.5",
        f"--data_dir={tiny_data_dir}",
        f"--exp_dir={tmp_path / 'exps'}",
        f"--ckpt_dir={tmp_path / 'ckpts'}",
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert lines[-1].startswith("error: ") and "GBCELoss.t=1.5: expected 0 <= t <= 1" in lines[-1]

"""Popularity / mixed samplers and train_fn.logq_correction through the real config path."""

from __future__ import annotations

import gin
import pytest
import torch

from generative_recommenders.config.build import build_components, build_training, validate
from generative_recommenders.config.run import RunOptions, load_config, preflight
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.mixed_negatives import MixedNegativesSampler
from generative_recommenders.modeling.popularity_negatives import PopularityNegativesSampler
from generative_recommenders.training.distributed import DistributedContext
from generative_recommenders.training.inputs import encoder_inputs
from tests.training.conftest import REPO, TINY_CONFIG, run_main

POPULARITY = ('train_fn.sampling_strategy = "popularity"',)
MIXED = (
    'train_fn.sampling_strategy = "mixed"',
    "MixedNegativesSampler.num_in_batch = 6",
    "MixedNegativesSampler.num_catalogue = 10",  # 16, as tiny's train_fn.num_negatives
)


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def _options(data_dir, *bindings: str) -> RunOptions:
    return RunOptions(
        gin_config_files=(str(TINY_CONFIG),), gin_bindings=bindings, data_dir=str(data_dir)
    )


def _refusal(data_dir, *bindings: str) -> str:
    with pytest.raises(UserInputError) as caught:
        preflight(_options(data_dir, *bindings))
    message = str(caught.value)
    assert "\n" not in message
    return message


def _prefix(data_dir, *bindings: str) -> str:
    config = load_config(_options(data_dir, *bindings))
    return validate(config, SequenceStore.open(data_dir, config.dataset_name))


def _build_refusal(data_dir, counts: torch.Tensor | None, *bindings: str) -> str:
    config = load_config(_options(data_dir, *bindings))
    store = SequenceStore.open(data_dir, config.dataset_name)
    catalogue = torch.as_tensor(store.catalogue_item_ids())
    with pytest.raises(UserInputError) as caught:
        build_components(config, store.max_item_id, catalogue, torch.device("cpu"), counts)
    assert "\n" not in str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize(
    "bindings", [POPULARITY, (*MIXED, 'MixedNegativesSampler.catalogue = "popularity"')]
)
def test_a_store_without_counts_or_with_all_zero_counts_is_one_line(tiny_data_dir, bindings):
    strategy = bindings[0].split("= ")[1].strip('"')
    message = _build_refusal(tiny_data_dir, None, *bindings)
    assert message.startswith(f"train_fn.sampling_strategy='{strategy}'")
    assert "needs the store's item counts" in message and "this store has none" in message
    zeros = torch.zeros(
        SequenceStore.open(tiny_data_dir, "tiny").max_item_id + 1, dtype=torch.int64
    )
    message = _build_refusal(tiny_data_dir, zeros, *bindings)
    assert "every catalogue item has a training count of 0" in message


def test_the_popularity_sampler_gets_the_training_counts(tiny_data_dir):
    config = load_config(_options(tiny_data_dir, *POPULARITY, 'train_fn.eval_split = "valid"'))
    store = SequenceStore.open(tiny_data_dir, "tiny")
    built = build_training(config, store, DistributedContext(0, 0, 1, torch.device("cpu")))
    sampler = built.model.negatives_sampler
    assert isinstance(sampler, PopularityNegativesSampler)
    # Under the validation protocol each user's last two items are held out of the counts.
    counts = torch.as_tensor(store.item_counts()).double()
    offsets = torch.tensor(store.offsets)
    items = torch.tensor(store.item_ids)
    for k in (1, 2):
        counts -= torch.bincount(items[offsets[1:] - k], minlength=counts.numel()).double()
    catalogue = counts[sampler.candidate_ids()]
    torch.testing.assert_close(sampler.probabilities(), catalogue / catalogue.sum())
    assert "pop-a1" in built.run_prefix


def test_mixed_with_zero_negatives_is_one_line(tiny_data_dir):
    message = _refusal(
        tiny_data_dir,
        'train_fn.sampling_strategy = "mixed"',
        "MixedNegativesSampler.num_in_batch = 0",
        "MixedNegativesSampler.num_catalogue = 0",
    )
    assert message.startswith("train_fn.sampling_strategy='mixed'")
    assert "expected at least one negative in total" in message


def test_num_negatives_contradicting_the_mixed_counts_is_one_line(tiny_data_dir):
    message = _refusal(
        tiny_data_dir,
        'train_fn.sampling_strategy = "mixed"',
        "MixedNegativesSampler.num_in_batch = 4",
        "MixedNegativesSampler.num_catalogue = 4",
    )
    assert "train_fn.num_negatives=16 contradicts train_fn.sampling_strategy='mixed'" in message
    assert "num_in_batch + MixedNegativesSampler.num_catalogue = 4 + 4 = 8" in message


@pytest.mark.parametrize(
    "bindings, expected",
    [
        (
            ('train_fn.loss_module = "BCELoss"', "train_fn.temperature = 1.0"),
            "train_fn.loss_module='BCELoss' draws 1 negatives per position",
        ),
        (("SampledSoftmaxLoss.num_to_sample = 5",), "draws 5 negatives per position"),
    ],
)
def test_a_loss_count_contradicting_the_mixed_counts_is_one_line(tiny_data_dir, bindings, expected):
    message = _refusal(
        tiny_data_dir,
        *MIXED,
        "train_fn.num_negatives = None",
        *bindings,
    )
    assert expected in message and "= 6 + 10 = 16 negatives per position" in message


def test_unbound_num_negatives_takes_the_mixed_counts(tiny_data_dir):
    prefix = _prefix(
        tiny_data_dir,
        'train_fn.sampling_strategy = "mixed"',
        "MixedNegativesSampler.num_in_batch = 3",
        "MixedNegativesSampler.num_catalogue = 5",
        'MixedNegativesSampler.catalogue = "popularity"',
        "train_fn.num_negatives = None",
    )
    assert "mixed-b3-c5-pop-a1" in prefix and "ssl-t0.05-n8" in prefix


def test_run_names_differ_with_the_correction(tiny_data_dir):
    plain = _prefix(tiny_data_dir, *MIXED)
    corrected = _prefix(tiny_data_dir, *MIXED, "train_fn.logq_correction = True")
    assert plain != corrected and "-logq" in corrected and "-logq" not in plain


@pytest.mark.parametrize(
    "bindings",
    [
        (*POPULARITY, "PopularityNegativesSampler.exponent = 0.75"),
        (*MIXED, 'MixedNegativesSampler.catalogue = "popularity"'),
    ],
)
def test_a_few_training_steps_with_the_correction(tiny_data_dir, bindings):
    config = load_config(_options(tiny_data_dir, *bindings, "train_fn.logq_correction = True"))
    store = SequenceStore.open(tiny_data_dir, "tiny")
    torch.manual_seed(0)
    built = build_training(config, store, DistributedContext(0, 0, 1, torch.device("cpu")))
    model = built.model
    assert "-logq" in built.run_prefix
    assert model.loss.logq_correction
    assert isinstance(model.negatives_sampler, (PopularityNegativesSampler, MixedNegativesSampler))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step, batch in enumerate(built.data.train.loader):
        if step == 3:
            break
        total, main, _ = model(encoder_inputs(batch, write_target_id=True))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(float(main))
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    "bindings, expected",
    [
        (
            (
                'train_fn.sampling_strategy = "mixed"',
                "MixedNegativesSampler.num_in_batch = 0",
                "MixedNegativesSampler.num_catalogue = 0",
            ),
            "error: train_fn.sampling_strategy='mixed'",
        ),
        (  # a loss without the parameter (in a subprocess: importing it here would register it
            # with gin for the rest of the test session)
            (
                "import examples.custom_loss",
                'train_fn.loss_module = "PairwiseHingeLoss"',
                "train_fn.temperature = None",
                "train_fn.logq_correction = True",
            ),
            "error: train_fn.logq_correction=True is used by none of the chosen components",
        ),
    ],
)
def test_main_ends_a_bad_sampler_or_logq_binding_with_one_line_and_exit_2(
    tmp_path, tiny_data_dir, bindings, expected
):
    run = run_main(
        REPO,  # the gin import line resolves from the working directory
        f"--gin_config_file={TINY_CONFIG}",
        *[f"--gin_bindings={binding}" for binding in bindings],
        f"--data_dir={tiny_data_dir}",
        f"--exp_dir={tmp_path / 'exps'}",
        f"--ckpt_dir={tmp_path / 'ckpts'}",
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert lines[-1].startswith(expected), lines[-1]


def test_logq_with_the_full_softmax_is_refused(tiny_data_dir):
    message = _refusal(
        tiny_data_dir,
        'train_fn.loss_module = "FullSoftmaxLoss"',
        "train_fn.num_negatives = None",
        "train_fn.logq_correction = True",
    )
    assert "train_fn.logq_correction=True is used by none of the chosen components" in message

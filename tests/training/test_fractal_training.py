"""The ml-3b settings train, unchanged, on an expanded store: named ml-3b, or any name through
``train_fn.dataset_name`` (a tiny store expanded 2 x 2 stands in for ML-20M 16 x 32)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from generative_recommenders.config.run import RunOptions, preflight, run_training
from generative_recommenders.data.fractal import FractalSettings
from generative_recommenders.data.fractal_store import expand_store
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.training.launch import Topology
from tests.training.conftest import REPO, free_port

ML_3B = sorted((REPO / "configs" / "ml-3b").glob("*.gin"))


@pytest.fixture(scope="module")
def expanded_data_dir(tmp_path_factory, tiny_data_dir) -> pathlib.Path:
    data_dir = tmp_path_factory.mktemp("fractal") / "data"
    shutil.copytree(tiny_data_dir / "tiny", data_dir / "tiny")
    for name in ("ml-3b", "tiny-x2x2"):
        expand_store("tiny", name, FractalSettings(2, 2, seed=1), data_dir)
    return data_dir


def _train(root: pathlib.Path, data_dir: pathlib.Path, config: pathlib.Path, *bindings: str):
    options = RunOptions(
        gin_config_files=(str(config),),
        # One short epoch; the model, batch and sequence length stay the config's.
        gin_bindings=("train_fn.num_epochs = 1", *bindings),
        data_dir=str(data_dir),
        exp_dir=str(root / "exps"),
        ckpt_dir=str(root / "ckpts"),
    )
    return run_training(options, Topology("127.0.0.1", free_port(), 1, 1, 0, "cpu"))


def test_ml_3b_configs_are_the_three_paper_settings():
    assert [p.name for p in ML_3B] == [
        "hstu-sampled-softmax-n96-seqlen500-final.gin",
        "hstu-sampled-softmax-n96-seqlen500-large-final.gin",
        "sasrec-sampled-softmax-n96-seqlen500-final.gin",
    ]


@pytest.mark.parametrize("config", ML_3B, ids=lambda p: p.stem)
def test_every_ml_3b_config_passes_preflight_on_a_store_named_ml_3b(expanded_data_dir, config):
    # The launcher's own checks: bindings valid, choices known, the store ml-3b opens.
    options = RunOptions(gin_config_files=(str(config),), data_dir=str(expanded_data_dir))
    assert preflight(options).dataset_name == "ml-3b"


def test_hstu_ml_3b_config_trains_on_any_expanded_store_by_name(tmp_path, expanded_data_dir):
    metrics = _train(tmp_path, expanded_data_dir, ML_3B[0], 'train_fn.dataset_name = "tiny-x2x2"')
    store = SequenceStore.open(expanded_data_dir, "tiny-x2x2")
    assert metrics["test"]["num_users"] == store.num_users  # every expanded user evaluated
    assert 0.0 <= metrics["test"]["hr@10"] <= 1.0
    run = next((tmp_path / "exps").glob("tiny-x2x2-l500/*/config.gin"))
    config = run.read_text()
    assert "train_fn.dataset_name = 'tiny-x2x2'" in config
    assert "train_fn.local_batch_size = 96" in config and "hstu_encoder.num_blocks = 4" in config

"""Tiny trained runs shared by the recommend tests (string user and item ids, 1 epoch, CPU)."""

from __future__ import annotations

import pathlib
import socket

import numpy as np
import pandas as pd
import pytest

from generative_recommenders.config.run import RunOptions, run_training
from generative_recommenders.data.preprocess import preprocess
from generative_recommenders.data.sources import SourceOptions
from generative_recommenders.training.launch import Topology

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY_CONFIG = REPO / "configs" / "tiny" / "hstu.gin"
NUM_ITEMS = 40
MOL_BINDINGS = (
    'train_fn.interaction_module_type = "MoL"',
    'train_fn.top_k_method = "MoLBruteForceTopK"',
    "create_mol_interaction_module.dot_product_dimension = 8",
    "create_mol_interaction_module.query_dot_product_groups = 2",
    "create_mol_interaction_module.item_dot_product_groups = 2",
    "create_mol_interaction_module.query_hidden_dim = 16",
    "create_mol_interaction_module.gating_query_hidden_dim = 8",
    "create_mol_interaction_module.gating_qi_hidden_dim = 8",
    "create_mol_interaction_module.gating_item_hidden_dim = 8",
)


def item_name(i: int) -> str:
    return f"sku-{i:02d}"


def write_events(path: pathlib.Path, num_users: int = 40, seed: int = 3) -> None:
    """Users "u<n>" walking a ring of items "sku-NN" (string ids on both sides)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, num_users + 1):
        start = int(rng.integers(1, NUM_ITEMS + 1))
        length = 30 if user == 1 else int(rng.integers(6, 20))  # u1 outgrows the window (20)
        for t in range(length):
            ring = (start + t - 1) % NUM_ITEMS + 1
            item = ring if rng.random() < 0.8 else int(rng.integers(1, NUM_ITEMS + 1))
            rows.append((f"u{user}", item_name(item), 1_000 + 3_600 * t + user, 4))
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"]).to_csv(
        path, index=False
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _train(root: pathlib.Path, data_dir: pathlib.Path, bindings: tuple[str, ...]) -> pathlib.Path:
    options = RunOptions(
        gin_config_files=(str(TINY_CONFIG),),
        gin_bindings=("train_fn.num_epochs = 1", *bindings),
        data_dir=str(data_dir),
        exp_dir=str(root / "exps"),
        ckpt_dir=str(root / "ckpts"),
    )
    result = run_training(options, Topology("127.0.0.1", _free_port(), 1, 1, 0, "cpu"))
    return pathlib.Path(result["run_dir"])


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("recommend_store")
    events = root / "events.csv"
    write_events(events)
    preprocess("csv", SourceOptions(data_dir=root / "data", input_file=events, name="tiny"))
    # A titles table, as MovieLens stores have (keyed by the store's item codes).
    mapping = pd.read_csv(root / "data" / "tiny" / "item_id_mapping.csv", dtype={"original": str})
    pd.DataFrame(
        {"item_id": mapping["item_id"], "title": "Title of " + mapping["original"]}
    ).to_csv(root / "data" / "tiny" / "items.csv", index=False)
    return root / "data"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, data_dir) -> pathlib.Path:
    return _train(tmp_path_factory.mktemp("recommend_run"), data_dir, ())


@pytest.fixture(scope="session")
def mol_run_dir(tmp_path_factory, data_dir) -> pathlib.Path:
    return _train(tmp_path_factory.mktemp("recommend_mol_run"), data_dir, MOL_BINDINGS)


@pytest.fixture(scope="session")
def recommender(run_dir):
    from generative_recommenders.recommend import Recommender

    return Recommender.from_run(run_dir)


@pytest.fixture(scope="session")
def masked_run_dir(tmp_path_factory, data_dir) -> pathlib.Path:
    """A masked-objective (bidirectional HSTU) run."""
    return _train(
        tmp_path_factory.mktemp("recommend_masked_run"),
        data_dir,
        ('train_fn.objective = "masked"', "masked.mask_prob = 0.3"),
    )

"""The notebook flow of docs/python.md: DataFrame -> train -> recommend -> similar items."""

from __future__ import annotations

import json

import gin
import numpy as np
import pandas as pd
import pytest

import generative_recommenders
from generative_recommenders.api import as_bindings
from generative_recommenders.errors import UserInputError
from tests.training.conftest import TINY_CONFIG


def _events(num_users: int = 40, seed: int = 0) -> pd.DataFrame:
    """Users who mostly walk a ring of 30 items, with string user ids and other column names."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        start = int(rng.integers(0, 30))
        for t in range(int(rng.integers(5, 16))):
            item = 100 + (start + t) % 30 if rng.random() < 0.8 else 100 + int(rng.integers(0, 30))
            rows.append((f"user-{user}", item, 1_700_000_000 + 3600 * t))
    return pd.DataFrame(rows, columns=["customer", "sku", "ts"])


@pytest.fixture(autouse=True)
def _clear_gin():
    yield
    gin.clear_config()


def test_dataframe_train_recommend_and_similar_items(tmp_path) -> None:
    events = _events()
    run = generative_recommenders.train(
        str(TINY_CONFIG),
        {"num_epochs": 2, "num_negatives": 8, "eval_interval": 0},
        interactions=events,
        user_id_column="customer",
        item_id_column="sku",
        timestamp_column="ts",
        data_dir=tmp_path / "data",
        exp_dir=tmp_path / "exps",
        ckpt_dir=tmp_path / "ckpts",
        device="cpu",
    )
    assert run.metrics["test"]["num_users"] == 40
    assert 0.0 <= run.metrics["test"]["ndcg@10"] <= 1.0
    assert run.run_dir.parent.name == "dataframe-l20"
    saved = json.loads((run.run_dir / "metrics.json").read_text())
    assert saved["test"]["ndcg@10"] == pytest.approx(run.metrics["test"]["ndcg@10"])

    rec = run.recommender()
    top = rec.recommend(["user-3", "user-7"], k=5)
    assert list(top["user_id"].unique()) == ["user-3", "user-7"]
    assert len(top) == 10 and set(top["rank"]) == {1, 2, 3, 4, 5}
    seen = set(events.loc[events["customer"] == "user-3", "sku"])
    assert not seen & set(top.loc[top["user_id"] == "user-3", "item_id"])  # viewed filtered
    assert set(top["item_id"]) <= set(events["sku"])  # the DataFrame's own item ids

    new = rec.recommend_for_histories({"new-user": [100, 101]}, k=4)
    assert len(new) == 4 and not {100, 101} & set(new["item_id"])

    similar = rec.similar_items([100], k=3)
    assert len(similar) == 3 and 100 not in set(similar["item_id"])


def test_a_missing_column_is_one_line(tmp_path) -> None:
    with pytest.raises(UserInputError) as caught:
        generative_recommenders.train(
            str(TINY_CONFIG), interactions=_events(), data_dir=tmp_path, device="cpu"
        )
    message = str(caught.value)
    assert "\n" not in message and "'user_id'" in message and "customer" in message


def test_bindings_from_a_dict_are_gin_lines() -> None:
    assert as_bindings({"num_epochs": 3, "hstu_encoder.dqk": 8, "eval_split": "valid"}) == [
        "train_fn.num_epochs = 3",
        "hstu_encoder.dqk = 8",
        "train_fn.eval_split = 'valid'",
    ]
    assert as_bindings("train_fn.num_epochs = 1") == ["train_fn.num_epochs = 1"]

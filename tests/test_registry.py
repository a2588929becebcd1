"""Registration by name: a metric and a data source of one's own, and the registry's refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from generative_recommenders.data.store import SequenceStore
from generative_recommenders.evaluation.evaluator import Evaluator
from generative_recommenders.evaluation.metrics import per_user_metrics
from generative_recommenders.registry import METRICS, SOURCES, Registry, UnknownChoiceError
from generative_recommenders.retrieval import CandidateIndex, MIPSBruteForceTopK
from tests.training.conftest import REPO


def test_a_registered_metric_is_reported_and_selectable() -> None:
    @METRICS.register("hit_half", ks=(2, 4))
    def hit_half(ranks: torch.Tensor, k: int, k_max: int) -> torch.Tensor:
        """0.5 where rank <= k (a toy metric)."""
        return 0.5 * (ranks <= min(k, k_max)).to(torch.float64)

    try:
        ranks = torch.tensor([1, 3, 9])
        values = per_user_metrics(ranks, k_max=10)
        assert values["hit_half@2"].tolist() == [0.5, 0.0, 0.0]
        assert values["hit_half@4"].tolist() == [0.5, 0.5, 0.0]
        assert list(per_user_metrics(ranks, 10, names=("mrr", "hit_half"))) == [
            "mrr",
            "hit_half@2",
            "hit_half@4",
        ]
        # Through the evaluator, restricted to two registered metrics.
        items = torch.eye(4)[1:]  # item ids 1..3 along the axes
        index = CandidateIndex(torch.tensor([1, 2, 3]), items)
        evaluator = Evaluator(metric_names=("hit_half", "mrr"))
        batch = _batch()
        result = evaluator.evaluate(
            [batch],
            query_fn=lambda b: items[b.target_ids - 1],  # each query scores its target first
            retrieval=MIPSBruteForceTopK(_dot(), index),
        )
        assert result["hit_half@2"] == 0.5 and result["mrr"] == 1.0
        assert "ndcg@10" not in result and "hr@10" not in result
    finally:
        METRICS.unregister("hit_half")
    assert "hit_half@2" not in per_user_metrics(torch.tensor([1]), k_max=10)


def _dot():
    from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity

    return DotProductSimilarity()


def _batch():
    from generative_recommenders.data.batch import SequenceBatch

    zeros = torch.zeros(2, dtype=torch.int64)
    return SequenceBatch(
        rows=zeros,
        user_ids=torch.tensor([1, 2]),
        ids=torch.zeros(2, 1, dtype=torch.int64),
        lengths=zeros,
        timestamps=torch.zeros(2, 1, dtype=torch.int64),
        ratings=torch.zeros(2, 1),
        target_ids=torch.tensor([1, 3]),
        target_timestamps=zeros,
        target_ratings=torch.zeros(2),
    )


def test_the_same_name_for_another_object_is_refused() -> None:
    registry = Registry("thing", "train_fn.thing")

    @registry.register("a")
    class First:
        pass

    assert registry.register("a")(First) is First  # the same class again: a no-op
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):

        @registry.register("a")
        class Second:
            pass

    with pytest.raises(UnknownChoiceError, match="train_fn.thing='b' is not one of: a"):
        registry.get("b")


def test_a_source_of_ones_own_builds_a_store(tmp_path) -> None:
    (tmp_path / "toy_source.py").write_text(
        """
import numpy as np

from generative_recommenders.data.sources.base import Interactions
from generative_recommenders.registry import SOURCES


@SOURCES.register("toy")
def load_toy(opts):
    users = np.repeat(np.arange(1, 6), 4)
    return Interactions(
        users=users,
        items=np.tile(np.arange(1, 5), 5),
        timestamps=np.arange(20, dtype=np.int64),
        ratings=None,
        min_user_interactions=2,
    )
"""
    )
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "preprocess_public_data.py"),
            "--source_module=toy_source",
            "--dataset=toy",
            f"--data_dir={tmp_path / 'data'}",
        ],
        cwd=tmp_path,  # the module resolves from the working directory
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    store = SequenceStore.open(tmp_path / "data", "toy")
    assert len(store.user_ids) == 5 and store.max_item_id == 4
    assert "toy" not in SOURCES  # registered in that process only
    assert np.asarray(store.history(0)).tolist() == [1, 2, 3, 4]


def test_an_unknown_source_module_is_one_line(tmp_path) -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "preprocess_public_data.py"),
            "--source_module=no_such_module",
            f"--data_dir={tmp_path}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1
    assert "--source_module='no_such_module'" in lines[0]

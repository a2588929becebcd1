"""Two gloo processes, each with half of an odd number of users, give the one-process result."""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp

from tests.evaluation.evaluation_fixtures import World, evaluate_users, gloo_worker

SETTINGS = {
    "num_users": 7,
    "batch_size": 2,
    "evaluator": {"filter_seen": "all", "sampled_negatives": "uni100", "seed": 1},
}


def test_two_process_gloo_evaluation_equals_single_process(tmp_path):
    world = World(num_users=SETTINGS["num_users"])
    single = evaluate_users(
        world, list(range(SETTINGS["num_users"])), SETTINGS["batch_size"], **SETTINGS["evaluator"]
    )
    mp.spawn(
        gloo_worker,
        args=(2, str(tmp_path / "rendezvous"), str(tmp_path), SETTINGS),
        nprocs=2,
        join=True,
    )
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]  # every rank holds the reduced result
    assert results[0]["num_users"] == 7  # 4 + 3 users: none dropped, none counted twice
    assert set(results[0]) == set(single)
    for key, value in single.items():
        assert results[0][key] == pytest.approx(value, rel=1e-12, abs=1e-12), key

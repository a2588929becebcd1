from __future__ import annotations

import random

import numpy as np
import torch

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.training.inputs import encoder_inputs
from generative_recommenders.training.optim import make_optimizer, make_warmup_scheduler
from generative_recommenders.training.seeding import rng_state, seed_everything, set_rng_state


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_rng_state_round_trip_restores_every_generator() -> None:
    seed_everything(7)
    state = rng_state()
    first = _draws()
    set_rng_state(state)
    assert _draws() == first
    seed_everything(8)
    assert _draws() != first


def _batch() -> SequenceBatch:
    return SequenceBatch(
        rows=torch.tensor([0, 1]),
        user_ids=torch.tensor([10, 11]),
        ids=torch.tensor([[5, 6, 7], [8, 0, 0]]),
        lengths=torch.tensor([3, 1]),
        timestamps=torch.tensor([[1, 2, 3], [4, 0, 0]]),
        ratings=torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]),
        target_ids=torch.tensor([9, 2]),
        target_timestamps=torch.tensor([30, 40]),
        target_ratings=torch.tensor([5.0, 1.0]),
    )


def test_training_inputs_write_the_target_at_length() -> None:
    inputs = encoder_inputs(_batch(), write_target_id=True)
    assert inputs.ids.tolist() == [[5, 6, 7, 9], [8, 2, 0, 0]]
    assert inputs.timestamps.tolist() == [[1, 2, 3, 30], [4, 40, 0, 0]]
    assert inputs.ratings.tolist() == [[1, 2, 3, 0], [4, 0, 0, 0]]  # the target's rating is unseen


def test_evaluation_inputs_hide_the_target_id_but_keep_its_time() -> None:
    inputs = encoder_inputs(_batch(), write_target_id=False)
    assert inputs.ids.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert inputs.timestamps[:, -1].tolist() == [30, 0] and inputs.timestamps[1, 1] == 40


def test_warmup_is_linear_then_constant() -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(model, learning_rate=1.0, weight_decay=0.0)
    scheduler = make_warmup_scheduler(optimizer, num_warmup_steps=4)
    seen = []
    for _ in range(6):
        seen.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert seen == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert optimizer.defaults["betas"] == (0.9, 0.98)

"""Gin surface of the objective: get_weighted_loss bindings and the legacy-string mappings."""

from __future__ import annotations

import gin
import pytest
import torch

from generative_recommenders.config import objective
from generative_recommenders.config.evaluation import TOP_K_METHODS
from generative_recommenders.errors import UserInputError
from generative_recommenders.modeling.losses import BCELoss, SampledSoftmaxLoss
from generative_recommenders.modeling.negatives import LocalNegativesSampler
from generative_recommenders.registry import LOSSES, SAMPLERS
from generative_recommenders.retrieval import MoLBruteForceTopK


def test_the_registries_return_the_class_and_name_the_choices_otherwise():
    assert LOSSES.get("BCELoss") is BCELoss
    assert LOSSES.get("SampledSoftmaxLoss") is SampledSoftmaxLoss
    assert SAMPLERS.get("local") is LocalNegativesSampler
    assert TOP_K_METHODS["MoLBruteForceTopK"] is MoLBruteForceTopK
    with pytest.raises(ValueError) as caught:
        LOSSES.get("X")
    message = str(caught.value)
    assert message.startswith("train_fn.loss_module='X' is not one of: SampledSoftmaxLoss, BCELoss")
    assert isinstance(caught.value, UserInputError) and "\n" not in message


def test_get_weighted_loss_reads_its_gin_binding():
    aux = {"mi_loss": torch.tensor(2.0), "uid_embedding_l2_norm": torch.tensor(4.0)}
    try:
        gin.parse_config("get_weighted_loss.weights = {'mi_loss': 0.5}")
        torch.testing.assert_close(
            objective.get_weighted_loss(torch.tensor(1.0), aux), torch.tensor(2.0)
        )
        explicit = objective.get_weighted_loss(
            torch.tensor(1.0), aux, {"uid_embedding_l2_norm": 1.0}
        )
        torch.testing.assert_close(explicit, torch.tensor(5.0))
    finally:
        gin.clear_config()
    torch.testing.assert_close(
        objective.get_weighted_loss(torch.tensor(1.0), aux), torch.tensor(1.0)
    )


def test_an_unknown_loss_weight_is_a_user_input_error():
    with pytest.raises(UserInputError, match="'nope'.*mi_loss"):
        objective.get_weighted_loss(
            torch.tensor(1.0), {"mi_loss": torch.tensor(0.0)}, {"nope": 1.0}
        )

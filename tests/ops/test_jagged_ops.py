"""Jagged conversions: a round trip, and how the fbgemm backend is selected (its equality with the
reference is in tests/ops/test_backends.py)."""

import pytest
import torch

from generative_recommenders.ops import jagged, kernels, reference

pytestmark = pytest.mark.skipif(not jagged.HAS_FBGEMM, reason="fbgemm_gpu not importable")


@pytest.mark.parametrize("choice", ["reference", "fbgemm"])
def test_round_trip_restores_valid_rows_and_zero_padding(choice):
    lengths = torch.tensor([2, 0, 3])
    offsets = jagged.lengths_to_offsets(lengths)
    dense = torch.randn(3, 4, 5)
    with kernels.using(choice):
        back = jagged.jagged_to_dense(jagged.dense_to_jagged(dense, offsets), offsets, 4)
    mask = reference.valid_mask(lengths, 4).unsqueeze(-1)
    torch.testing.assert_close(back, dense * mask)


def test_auto_and_fbgemm_pick_fbgemm_reference_picks_the_formula() -> None:
    """fbgemm is the faster jagged backend on CPU (docs/kernels.md), so "auto" picks it."""
    for choice in ("auto", "fbgemm"):
        with kernels.using(choice):
            assert kernels.resolve_name("dense_to_jagged", "cpu") == "fbgemm"
            assert kernels.resolve_name("jagged_to_dense", "cpu") == "fbgemm"
            assert kernels.resolve_name("hstu_attention", "cpu") == "fused"  # "auto" elsewhere
    with kernels.using("reference"):
        assert kernels.resolve_name("dense_to_jagged", "cpu") == "reference"

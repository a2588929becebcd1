"""fbgemm-backed jagged ops equal their pure-PyTorch twins, in values and gradients."""

import pytest
import torch

from generative_recommenders.ops import jagged, reference

pytestmark = pytest.mark.skipif(not jagged.HAS_FBGEMM, reason="fbgemm_gpu not importable")

LENGTHS = [torch.tensor([3, 0, 5, 1]), torch.tensor([0, 0]), torch.tensor([4])]


@pytest.mark.parametrize("lengths", LENGTHS)
def test_lengths_to_offsets_matches_reference(lengths):
    assert torch.equal(jagged.lengths_to_offsets(lengths), reference.lengths_to_offsets(lengths))
    assert jagged.lengths_to_offsets(lengths).dtype == torch.int64


@pytest.mark.parametrize("lengths", LENGTHS)
def test_dense_to_jagged_values_and_gradients(lengths):
    torch.manual_seed(0)
    offsets = reference.lengths_to_offsets(lengths)
    dense = torch.randn(lengths.numel(), 6, 3, dtype=torch.float32)
    a = dense.clone().requires_grad_(True)
    b = dense.clone().requires_grad_(True)
    out_a, out_b = jagged.dense_to_jagged(a, offsets), reference.dense_to_jagged(b, offsets)
    assert out_a.shape == (int(lengths.sum()), 3)
    torch.testing.assert_close(out_a, out_b)
    weight = torch.randn_like(out_a)
    (out_a * weight).sum().backward()
    (out_b * weight).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("max_len", [2, 6])
def test_jagged_to_dense_values_and_gradients(lengths, max_len):
    torch.manual_seed(1)
    offsets = reference.lengths_to_offsets(lengths)
    values = torch.randn(int(lengths.sum()), 4, dtype=torch.float32)
    a = values.clone().requires_grad_(True)
    b = values.clone().requires_grad_(True)
    out_a = jagged.jagged_to_dense(a, offsets, max_len, padding_value=-1.0)
    out_b = reference.jagged_to_dense(b, offsets, max_len, padding_value=-1.0)
    torch.testing.assert_close(out_a, out_b)
    weight = torch.randn_like(out_a)
    (out_a * weight).sum().backward()
    (out_b * weight).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_round_trip_restores_valid_rows_and_zero_padding():
    lengths = torch.tensor([2, 0, 3])
    offsets = jagged.lengths_to_offsets(lengths)
    dense = torch.randn(3, 4, 5)
    back = jagged.jagged_to_dense(jagged.dense_to_jagged(dense, offsets), offsets, 4)
    mask = reference.valid_mask(lengths, 4).unsqueeze(-1)
    torch.testing.assert_close(back, dense * mask)


def test_reference_ops_block_switches_to_the_twins_and_back() -> None:
    from generative_recommenders.ops import jagged as jagged_ops

    values = torch.randn(5, 3)
    assert jagged_ops._use_fbgemm(values) == jagged_ops.HAS_FBGEMM
    with jagged_ops.reference_ops():
        assert not jagged_ops._use_fbgemm(values)
        offsets = jagged_ops.lengths_to_offsets(torch.tensor([2, 3]))
        dense = jagged_ops.jagged_to_dense(values, offsets, 4)
    assert jagged_ops._use_fbgemm(values) == jagged_ops.HAS_FBGEMM
    assert torch.equal(dense[1, :3], values[2:]) and torch.equal(dense[0, 2:], torch.zeros(2, 3))

"""The fused SiLU attention equals its plain formula; masked pairs contribute exactly nothing."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.ops.scatter import scatter_add_flat
from generative_recommenders.ops.silu_attention import (
    silu_attention,
    silu_attention_reference,
    with_mask_slot,
)


def _inputs(heads: int, seed: int = 0, b: int = 3, n: int = 6, table_size: int = 11):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, n, heads * 4, generator=gen, dtype=torch.float64)
    k = torch.randn(b, n, heads * 4, generator=gen, dtype=torch.float64)
    v = torch.randn(b, n, heads * 3, generator=gen, dtype=torch.float64)
    table = torch.randn(table_size, generator=gen, dtype=torch.float64)
    index = torch.randint(0, table_size, (b, n, n), generator=gen)
    index[0, 1, 0] = index[-1, 2, 1] = 3  # repeated slots accumulate gradients
    allowed = torch.ones(n, n, dtype=torch.bool).tril().unsqueeze(0)
    upstream = torch.randn(b, n, heads * 3, generator=gen, dtype=torch.float64)
    return q, k, v, table, torch.where(allowed, index, table_size), upstream  # masked -> slot


@pytest.mark.parametrize("heads", [1, 2])
def test_values_and_gradients_equal_the_plain_formula(heads):
    q, k, v, table, index, upstream = _inputs(heads)
    results = []
    for fn in (silu_attention_reference, silu_attention):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v, table)]
        out = fn(*leaves[:3], with_mask_slot(leaves[3]), index, heads, 9.0)
        (out * upstream).sum().backward()
        results.append((out.detach(), *[t.grad for t in leaves]))
    for plain, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, plain)


def test_without_autograd_the_same_values():
    q, k, v, table, index, _ = _inputs(2, seed=1)
    with torch.no_grad():
        fast = silu_attention(q, k, v, with_mask_slot(table), index, 2, 9.0)
    torch.testing.assert_close(
        fast, silu_attention_reference(q, k, v, with_mask_slot(table), index, 2, 9.0)
    )


def test_masked_keys_have_exactly_no_influence():
    """Changing what a query may not see (later keys and values, even to large values) leaves
    its output and the gradients of what it may see bit for bit unchanged."""
    q, k, v, table, index, upstream = _inputs(1, seed=2, b=1, n=5)
    outputs = []
    for scale in (1.0, 50.0):
        k2, v2 = k.clone(), v.clone()
        k2[:, 3:] *= scale
        v2[:, 3:] *= scale
        leaves = [t.clone().requires_grad_(True) for t in (q, k2, v2)]
        out = silu_attention(*leaves, with_mask_slot(table), index, 1, 9.0)
        (out[:, :3] * upstream[:, :3]).sum().backward()
        outputs.append((out[:, :3].detach(), leaves[0].grad[:, :3], leaves[1].grad[:, :3]))
    for first, second in zip(*outputs, strict=True):
        assert torch.equal(first, second)


@pytest.mark.parametrize("numel", [100, 1 << 17, (1 << 17) + 3])
def test_scatter_add_flat_equals_one_dimensional_scatter(numel):
    gen = torch.Generator().manual_seed(3)
    index = torch.randint(0, 97, (numel,), generator=gen)
    values = torch.randn(numel, generator=gen, dtype=torch.float64)
    want = torch.zeros(97, dtype=torch.float64).scatter_add_(0, index, values)
    torch.testing.assert_close(scatter_add_flat(97, index, values), want)

"""The fused SiLU attention's mask slot: masked pairs contribute exactly nothing (its equality with
the formula is in tests/ops/test_backends.py)."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.ops.scatter import scatter_add_flat
from generative_recommenders.ops.silu_attention import silu_attention, with_mask_slot


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

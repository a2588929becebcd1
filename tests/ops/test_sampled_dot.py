"""The chunked sampled dot products equal the plain gather + bmm, in values and gradients."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.ops import sampled_dot
from generative_recommenders.ops.sampled_dot import (
    sampled_dot_logits,
    sampled_dot_logits_reference,
    use_dense,
)


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("chunk_elements", [7, 1 << 22])
def test_values_and_gradients_equal_the_plain_formula(dense, chunk_elements, monkeypatch):
    monkeypatch.setattr(sampled_dot, "CHUNK_ELEMENTS", chunk_elements)  # several chunks, or one
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(11, 5, generator=gen, dtype=torch.float64)
    table = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    slots = torch.randint(0, 9, (11, 6), generator=gen)
    slots[0] = 3  # repeated slots in a row must accumulate gradients
    upstream = torch.randn(11, 6, generator=gen, dtype=torch.float64)
    _assert_equal_to_plain(queries, table, slots, upstream, dense)


def _assert_equal_to_plain(queries, table, slots, upstream, dense=None) -> None:
    """Values and both gradients of ``sampled_dot_logits`` equal the plain formula's."""
    results = []
    for fn in (sampled_dot_logits_reference, lambda q, t, s: sampled_dot_logits(q, t, s, dense)):
        q = queries.clone().requires_grad_(True)
        t = table.clone().requires_grad_(True)
        out = fn(q, t, slots)
        (out * upstream).sum().backward()
        results.append((out.detach(), q.grad, t.grad))
    for plain, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, plain)


def test_gradcheck_both_strategies():
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    slots = torch.randint(0, 5, (4, 3), generator=gen)
    for dense in (True, False):
        assert torch.autograd.gradcheck(
            lambda a, b, d=dense: sampled_dot_logits(a, b, slots, d), (q, t)
        )


def test_strategy_choice_depends_on_table_size():
    assert use_dense(1000, 128) and not use_dense(1_000_000, 128)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="slots"):
        sampled_dot_logits(torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2, dtype=torch.int64))


def test_reused_workspace_stays_correct_across_calls_of_other_sizes():
    """The dense strategy keeps its [c, U] buffers between calls: later calls with larger and
    smaller tables / fewer rows must still be exact (the zero scratch is reset after use)."""
    gen = torch.Generator().manual_seed(2)
    for rows, items in ((13, 7), (40, 31), (5, 3), (40, 31)):
        queries = torch.randn(rows, 4, generator=gen, dtype=torch.float64)
        table = torch.randn(items, 4, generator=gen, dtype=torch.float64)
        slots = torch.randint(0, items, (rows, 5), generator=gen)
        upstream = torch.randn(rows, 5, generator=gen, dtype=torch.float64)
        _assert_equal_to_plain(queries, table, slots, upstream, dense=True)

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


def _assert_same_values_and_gradients(plain, fast, leaves, constants, upstream) -> None:
    """``plain(*leaves, *constants)`` and ``fast(...)``: equal outputs and gradients of every
    leaf (each call gets fresh copies of the leaves)."""
    results = []
    for fn in (plain, fast):
        copies = [t.clone().requires_grad_(True) for t in leaves]
        out = fn(*copies, *constants)
        (out * upstream).sum().backward()
        results.append((out.detach(), *(t.grad for t in copies)))
    for expected, actual in zip(*results, strict=True):
        torch.testing.assert_close(actual, expected)


def _assert_equal_to_plain(queries, table, slots, upstream, dense=None) -> None:
    """Values and both gradients of ``sampled_dot_logits`` equal the plain formula's."""
    fast = lambda q, t, s: sampled_dot_logits(q, t, s, dense)  # noqa: E731
    _assert_same_values_and_gradients(
        sampled_dot_logits_reference, fast, (queries, table), (slots,), upstream
    )


@pytest.mark.parametrize("eps", [None, 1e-6], ids=["raw", "normalised-in-op"])
def test_gradcheck_both_strategies(eps):
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    slots = torch.randint(0, 5, (4, 3), generator=gen)
    for dense in (True, False):
        assert torch.autograd.gradcheck(
            lambda a, b, d=dense: sampled_dot_logits(a, b, slots, d, normalize_eps=eps), (q, t)
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


def _softmax_losses_plain(queries, table, positive_logits, slots, positive_slots):
    """The plain formula: gathered logits, hits (slot == positive's slot) to -inf, logsumexp."""
    negatives = sampled_dot_logits_reference(queries, table, slots)  # [L, R]
    negatives = negatives.masked_fill(slots == positive_slots.unsqueeze(1), float("-inf"))
    logits = torch.cat([positive_logits.unsqueeze(1), negatives], dim=1)
    return torch.logsumexp(logits, dim=1) - positive_logits


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("chunk_elements", [7, 1 << 22])
@pytest.mark.parametrize("eps", [None, 0.01], ids=["raw", "normalised-in-op"])
def test_sampled_softmax_losses_equal_the_plain_formula(dense, chunk_elements, eps, monkeypatch):
    """Also with ``normalize_eps`` (one table row's norm below eps: the clamped branch)."""
    monkeypatch.setattr(sampled_dot, "CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(3)
    queries = torch.randn(12, 5, generator=gen, dtype=torch.float64)
    table = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    table[1] *= 1e-4
    positive_logits = torch.randn(12, generator=gen, dtype=torch.float64)
    slots = torch.randint(0, 6, (12, 8), generator=gen)
    positive_slots = torch.randint(0, 6, (12,), generator=gen)
    positive_slots[[2, 7]] = -1  # positives that are not in the table: nothing masked
    slots[0, :3] = positive_slots[0]  # accidental hits, some repeated
    assert int((slots == positive_slots.unsqueeze(1)).sum()) >= 3
    upstream = torch.rand(12, generator=gen, dtype=torch.float64)
    _assert_same_values_and_gradients(
        lambda q, t, *rest: _softmax_losses_plain(q, t if eps is None else _l2_rows(t, eps), *rest),
        lambda *a: sampled_dot.sampled_softmax_losses(*a, dense=dense, normalize_eps=eps),
        (queries, table, positive_logits),
        (slots, positive_slots),
        upstream,
    )


def test_sampled_softmax_losses_gradcheck():
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    p = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    slots = torch.randint(0, 5, (4, 3), generator=gen)
    positive_slots = torch.tensor([slots[0, 0], -1, 2, 4])
    for dense in (True, False):
        assert torch.autograd.gradcheck(
            lambda a, b, c, d=dense: sampled_dot.sampled_softmax_losses(
                a, b, c, slots, positive_slots, d
            ),
            (q, t, p),
        )


def test_sampled_softmax_losses_shapes_are_checked():
    with pytest.raises(ValueError, match="positive_slots"):
        sampled_dot.sampled_softmax_losses(
            torch.zeros(2, 3), torch.zeros(4, 3), torch.zeros(2), torch.zeros(2, 5).long(),
            torch.zeros(3).long(),
        )  # fmt: skip


def _l2_rows(table: torch.Tensor, eps: float) -> torch.Tensor:
    """The formula the in-op normalisation must equal: rows / max(|row|, eps)."""
    return table / torch.linalg.vector_norm(table, dim=-1, keepdim=True).clamp(min=eps)


def _table_with_a_clamped_row(gen: torch.Generator, rows: int, dim: int) -> torch.Tensor:
    table = torch.randn(rows, dim, generator=gen, dtype=torch.float64)
    table[1] *= 1e-4  # its norm is below eps = 0.01: the clamped branch
    return table


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("chunk_elements", [7, 1 << 22])
def test_in_op_normalisation_equals_normalising_the_table_first(dense, chunk_elements, monkeypatch):
    """``normalize_eps``: the logits and both gradients (the table's w.r.t. its raw rows) equal
    the plain formula on ``rows / max(|rows|, eps)``, including a row whose norm is clamped."""
    monkeypatch.setattr(sampled_dot, "CHUNK_ELEMENTS", chunk_elements)
    gen = torch.Generator().manual_seed(5)
    queries = torch.randn(11, 5, generator=gen, dtype=torch.float64)
    table = _table_with_a_clamped_row(gen, 9, 5)
    slots = torch.randint(0, 9, (11, 6), generator=gen)
    slots[0] = 1  # the clamped row, repeated
    upstream = torch.randn(11, 6, generator=gen, dtype=torch.float64)
    _assert_same_values_and_gradients(
        lambda q, t, s: sampled_dot_logits_reference(q, _l2_rows(t, 0.01), s),
        lambda q, t, s: sampled_dot_logits(q, t, s, dense, normalize_eps=0.01),
        (queries, table),
        (slots,),
        upstream,
    )

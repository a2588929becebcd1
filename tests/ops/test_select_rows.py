"""select_rows: the loss's jagged rows read from the slice's base tensor, same values and grads."""

from __future__ import annotations

import torch

from generative_recommenders.ops.jagged import select_rows

ROWS = torch.tensor([0, 3, 4, 9, 10, 14])  # flat b * N + t rows of a [3, 5, D] tensor


def _check(base: torch.Tensor, x: torch.Tensor) -> None:
    weight = torch.randn(len(ROWS), x.shape[-1], dtype=x.dtype)
    fast = select_rows(x, ROWS)
    (fast_grad,) = torch.autograd.grad((fast * weight).sum(), base)
    plain = x.reshape(-1, x.shape[-1])[ROWS]
    (plain_grad,) = torch.autograd.grad((plain * weight).sum(), base)
    assert torch.equal(fast, plain)
    assert torch.equal(fast_grad, plain_grad)


def test_rows_of_slices_and_other_layouts_match_plain_indexing():
    torch.manual_seed(0)
    for start in (0, 1):  # outputs[:, :-1] and embeddings[:, 1:] in the model
        base = torch.randn(3, 6, 4, dtype=torch.float64, requires_grad=True)
        _check(base, base[:, start : start + 5])
    contiguous = torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True)
    _check(contiguous, contiguous)
    transposed = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    _check(transposed, transposed.transpose(0, 1)[:, :5])  # a view, but not a dim-1 slice


def test_a_slice_is_read_from_its_base_without_a_copy():
    base = torch.randn(3, 6, 4, requires_grad=True)
    picked = select_rows(base[:, 1:], torch.tensor([0, 7]))
    view = picked.grad_fn.next_functions[0][0]  # index_select's input: base.view(-1, D)
    assert view.next_functions[0][0].variable is base
    assert torch.equal(picked, base[:, 1:].reshape(-1, 4)[[0, 7]])

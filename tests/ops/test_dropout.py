"""The cheap-mask dropout: drop rate, scaling, gradient, and pass-through cases."""

from __future__ import annotations

import torch

from generative_recommenders.ops.dropout import Dropout, dropout, keep_mask


def test_drop_rate_and_scale_preserve_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(300_000)
    y = dropout(x, 0.2, training=True)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.2) < 0.005
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 65536 / (65536 - 13107)))
    assert abs(float(y.mean()) - 1.0) < 0.01


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(1)
    x = torch.randn(7, 9, requires_grad=True)
    y = dropout(x, 0.5, training=True)
    y.sum().backward()
    kept = y.detach() != 0
    assert 0 < int(kept.sum()) < kept.numel()
    torch.testing.assert_close(x.grad, kept.float() * 2.0)


def test_masks_differ_between_calls_and_follow_the_seed():
    torch.manual_seed(2)
    a, _ = keep_mask(torch.Size([64, 33]), 0.5, torch.device("cpu"))
    b, _ = keep_mask(torch.Size([64, 33]), 0.5, torch.device("cpu"))
    torch.manual_seed(2)
    c, _ = keep_mask(torch.Size([64, 33]), 0.5, torch.device("cpu"))
    assert a.shape == (64, 33) and not torch.equal(a, b) and torch.equal(a, c)


def test_eval_mode_zero_and_one_pass_through_like_torch():
    x = torch.randn(5, 4)
    module = Dropout(0.3).eval()
    assert torch.equal(module(x), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))

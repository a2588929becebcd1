"""The cheap-mask dropout: drop rate, scaling, gradient, and pass-through cases."""

from __future__ import annotations

import torch

from generative_recommenders.ops.dropout import Dropout, dropout, keep_scale


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
    a = keep_scale(torch.Size([64, 33]), 0.5, torch.device("cpu"))
    b = keep_scale(torch.Size([64, 33]), 0.5, torch.device("cpu"))
    torch.manual_seed(2)
    c = keep_scale(torch.Size([64, 33]), 0.5, torch.device("cpu"))
    assert a.shape == (64, 33) and not torch.equal(a, b) and torch.equal(a, c)


def test_eval_mode_zero_and_one_pass_through_like_torch():
    x = torch.randn(5, 4)
    module = Dropout(0.3).eval()
    assert torch.equal(module(x), x)
    assert torch.equal(dropout(x, 0.0, training=True), x)
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_every_word_of_a_draw_drops_at_the_rate():
    """Each of the four 16-bit words of a 64-bit draw (positions i % 4) is uniform: a biased
    word (e.g. a sign bit that is always 0) would drop at 0 or 2p at its positions."""
    torch.manual_seed(3)
    multiplier = keep_scale(torch.Size([400_000]), 0.3, torch.device("cpu"))
    values = multiplier.unique()
    torch.testing.assert_close(values, torch.tensor([0.0, 65536 / (65536 - 19661)]))
    rates = (multiplier == 0).view(-1, 4).float().mean(0)
    assert torch.all((rates - 0.3).abs() < 0.006), rates


def test_keep_mask_in_the_same_multiply_equals_dropout_then_mask():
    mask = (torch.rand(6, 40, 1) > 0.3).float()
    for training in (True, False):
        x = torch.randn(6, 40, 8, requires_grad=True)
        torch.manual_seed(3)
        fused = dropout(x, 0.2, training, keep=mask)
        (fused_grad,) = torch.autograd.grad(fused.sum(), x)
        torch.manual_seed(3)
        plain = dropout(x, 0.2, training) * mask
        (plain_grad,) = torch.autograd.grad(plain.sum(), x)
        assert torch.equal(fused, plain) and torch.equal(fused_grad, plain_grad)
        assert bool((fused[mask.expand_as(fused) == 0] == 0).all())

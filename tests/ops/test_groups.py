"""to_groups / ungroup (the auto kernels) against plain sorting, slicing and padding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from generative_recommenders.ops.groups import length_groups, to_groups, ungroup


def _plain_groups(x: torch.Tensor, groups) -> list[torch.Tensor]:
    x_sorted = x[groups.order]
    return [x_sorted[start:end, :width] for start, end, width in groups.bounds]


def _plain_ungroup(outputs: list[torch.Tensor], order: torch.Tensor, width: int) -> torch.Tensor:
    padded = torch.cat([F.pad(h, (0, 0, 0, width - h.shape[1])) for h in outputs])
    out = torch.zeros_like(padded)
    out[order] = padded
    return out


def test_groups_and_ungroup_match_plain_indexing_values_and_gradients():
    torch.manual_seed(0)
    lengths = torch.tensor([3, 9, 0, 5, 9, 1, 7])
    x = torch.randn(7, 10, 4, dtype=torch.float64, requires_grad=True)
    groups = length_groups(lengths, group_size=3)
    weights = [torch.randn(e - s, w, 4, dtype=torch.float64) for s, e, w in groups.bounds]
    out_weight = torch.randn(7, 10, 4, dtype=torch.float64)

    results = []
    for split, merge in ((to_groups, ungroup), (_plain_groups, _plain_ungroup)):
        hs = split(x, groups)
        transformed = [h * w for h, w in zip(hs, weights, strict=True)]  # a different op per row
        out = merge(transformed, groups.order, 10)
        (grad,) = torch.autograd.grad((out * out_weight).sum() + hs[1].sum(), x)
        results.append(([h.detach() for h in hs], out.detach(), grad))

    (fast_hs, fast_out, fast_grad), (plain_hs, plain_out, plain_grad) = results
    assert [h.shape for h in fast_hs] == [(3, 9, 4), (3, 5, 4), (1, 1, 4)]
    assert all(h.is_contiguous() for h in fast_hs)
    for fast, plain in zip(fast_hs, plain_hs, strict=True):
        assert torch.equal(fast, plain)
    assert torch.equal(fast_out, plain_out)
    assert torch.equal(fast_grad, plain_grad)
    assert fast_grad.abs().sum() > 0
    with torch.no_grad():  # evaluation and tracing take the same ops outside autograd
        no_grad_hs = to_groups(x, groups)
        assert all(torch.equal(a, b) for a, b in zip(no_grad_hs, fast_hs, strict=True))
        merged = [h * w for h, w in zip(no_grad_hs, weights, strict=True)]
        assert torch.equal(ungroup(merged, groups.order, 10), fast_out)

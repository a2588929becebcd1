"""AutoLossGen's phase 2: which searched formulas are losses worth testing.

A pairwise formula ``f(pos, neg)`` passes when, on a grid of logits (``GRID`` x ``GRID``):

1. its values and both gradients are finite everywhere;
2. it never rises as the positive's logit rises, nor as the negative's falls
   (``df/dpos <= tol`` and ``df/dneg >= -tol`` everywhere), and it does move with each
   (some ``df/dpos < -tol`` and some ``df/dneg > tol``): raising the positive above the negatives
   lowers the loss;
3. its values are not those of a formula already kept (up to a constant offset).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from generative_recommenders.modeling.formula import Node, family

GRID = torch.linspace(-10.0, 10.0, 41, dtype=torch.float64)
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str  # "valid", or why not


def grid_values(formula: Node) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(values, d/dpos, d/dneg) on the grid, each [len(GRID), len(GRID)] float64."""
    pos, neg = torch.meshgrid(GRID.clone(), GRID.clone(), indexing="ij")
    pos, neg = pos.clone().requires_grad_(True), neg.clone().requires_grad_(True)
    values = formula.evaluate({"pos": pos, "neg": neg}).expand_as(pos)
    if not values.requires_grad:  # a constant formula
        return values.detach(), torch.zeros_like(values), torch.zeros_like(values)
    grads = torch.autograd.grad(values.sum(), (pos, neg), allow_unused=True)
    d_pos, d_neg = (torch.zeros_like(pos) if g is None else g for g in grads)
    return values.detach(), d_pos, d_neg


def check(formula: Node, kept_values: list[torch.Tensor]) -> tuple[Verdict, torch.Tensor | None]:
    """The formula's verdict, and its grid values when it is valid (to compare later ones)."""
    if family(formula) != "pairwise":
        return Verdict(False, "not a pairwise formula of pos and neg"), None
    values, d_pos, d_neg = grid_values(formula)
    if not all(torch.isfinite(t).all() for t in (values, d_pos, d_neg)):
        return Verdict(False, "not finite on the grid (values or gradients)"), None
    if (d_pos > TOLERANCE).any() or (d_neg < -TOLERANCE).any():
        return Verdict(False, "rises with the positive's logit or falls with a negative's"), None
    if not (d_pos < -TOLERANCE).any() or not (d_neg > TOLERANCE).any():
        return Verdict(False, "does not depend on both the positive and the negatives"), None
    centred = values - values.mean()
    for other in kept_values:
        if torch.allclose(centred, other, rtol=1e-6, atol=1e-9):
            return Verdict(False, "same values as a formula already kept"), None
    return Verdict(True, "valid"), centred

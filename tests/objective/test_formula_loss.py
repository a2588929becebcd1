"""FormulaLoss and its safe parser: formulas against hand-written losses, and bad formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from generative_recommenders.modeling.formula import FormulaError, family, parse
from generative_recommenders.modeling.formula_loss import FormulaLoss, row_losses
from generative_recommenders.modeling.losses import BCELoss
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from tests.objective.test_losses import FixedSlotsSampler, _inputs, _run


@pytest.mark.parametrize(
    "text",
    [
        "softplus(neg - pos)",
        "max(0, 1 - pos + neg)",
        "-(label * log(sigmoid(score)) + (1 - label) * log(1 - sigmoid(score)))",
        "safe_log(safe_exp(neg) + safe_reciprocal(pos * 2.5e-1))",
        "min(exp(neg(pos)), abs(neg)) / 3",
    ],
)
def test_formulas_print_back_to_the_same_tree(text) -> None:
    node = parse(text)
    assert parse(node.text()) == node and parse(node.infix()) == node


def test_the_formula_is_the_arithmetic_it_says() -> None:
    pos, neg = torch.tensor([[0.5], [-1.0]]), torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    env = {"pos": pos, "neg": neg}
    torch.testing.assert_close(parse("softplus(neg - pos)").evaluate(env), F.softplus(neg - pos))
    torch.testing.assert_close(
        parse("max(0, 1 - pos + neg)").evaluate(env), (1 - pos + neg).clamp(min=0)
    )
    torch.testing.assert_close(parse("2 * -pos / 4").evaluate(env), -pos / 2)
    torch.testing.assert_close(parse("safe_log(0 * pos)").evaluate(env), torch.log(pos * 0 + 1e-6))
    assert family(parse("score * label")) == "pointwise" and family(parse("neg")) == "pairwise"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("softplus(neg - pos", "expected ')' at the end"),
        ("foo(pos)", "unknown operator 'foo' at position 0"),
        ("pos + x", "unknown variable 'x' at position 6"),
        ("pos + score", "mixes pairwise"),
        ("max(pos)", "takes 2 argument(s), got 1"),
        ("__import__('os').system('true')", "unexpected character"),
        ("__import__(pos)", "unknown operator '__import__'"),
        ("pos.real", "unexpected character '.'"),
        ("", "empty formula"),
    ],
)
def test_bad_formulas_are_refused_in_one_line(text, expected) -> None:
    with pytest.raises(FormulaError) as caught:
        parse(text)
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_pairwise_rows_average_the_kept_negatives_only() -> None:
    logits = torch.tensor([[2.0, 1.0, 2.0, -1.0], [0.0, 0.5, 0.5, 0.5]], requires_grad=True)
    hits = torch.tensor([[False, True, False], [True, True, True]])
    losses = row_losses(parse("max(0, 1 - pos + neg)"), logits, hits)
    # Row 0 keeps negatives 1.0 and -1.0: hinge 0 and 0 ... and 1 - 2 + 1 = 0 -> (0 + 0) / 2.
    # Row 1 keeps nothing: 0.
    torch.testing.assert_close(losses, torch.tensor([0.0, 0.0]))
    losses = row_losses(parse("softplus(neg - pos)"), logits, hits)
    expected = torch.stack([(F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(-3.0))) / 2,
                            torch.tensor(0.0)])  # fmt: skip
    torch.testing.assert_close(losses, expected)


def _bpr_reference(ids, weights, table, outputs, cand_ids, slots, temp):
    """Per-position loop: mean over the non-hit negatives of softplus((s_j - s+) / T)."""
    numerator, denominator, row = 0.0, 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            if weights[b, t] <= 0:
                continue
            query = outputs[b, t]
            positive = (query * table[ids[b, t]]).sum() / temp
            kept = [int(cand_ids[s]) for s in slots[row] if int(cand_ids[s]) != int(ids[b, t])]
            terms = [F.softplus((query * table[i]).sum() / temp - positive) for i in kept]
            loss = torch.stack(terms).mean() if terms else torch.tensor(0.0)
            numerator = numerator + weights[b, t] * loss
            denominator += float(weights[b, t])
            row += 1
    return numerator / denominator


def test_bpr_formula_equals_the_per_position_loop_in_value_and_gradient() -> None:
    ids, weights, table, outputs = _inputs(3)
    slots = torch.tensor([[0, 1, 0], [2, 2, 0], [1, 2, 2], [0, 1, 1], [2, 0, 0]])  # with hits
    table.requires_grad_(True)
    outputs.requires_grad_(True)
    loss_module = FormulaLoss("softplus(neg - pos)", num_to_sample=3, temperature=0.5)
    loss, _ = _run(
        loss_module, FixedSlotsSampler(slots, False), ids, weights, table, outputs,
        DotProductSimilarity(), None,
    )  # fmt: skip
    expected = _bpr_reference(ids, weights, table, outputs, torch.tensor([4, 7, 9]), slots, 0.5)
    torch.testing.assert_close(loss, expected)
    got = torch.autograd.grad(loss, (table, outputs))
    want = torch.autograd.grad(expected, (table, outputs))
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_pointwise_bce_formula_equals_bce_loss() -> None:
    ids, weights, table, outputs = _inputs(1)
    slots = torch.tensor([[0], [1], [2], [1], [0]])  # two accidental hits
    formula = "softplus(-score) * label + softplus(score) * (1 - label)"
    results = []
    for module in (FormulaLoss(formula, 1, 2.0), BCELoss(temperature=2.0)):
        leaf_outputs = outputs.clone().requires_grad_(True)
        loss, _ = _run(
            module, FixedSlotsSampler(slots, True), ids, weights, table, leaf_outputs,
            DotProductSimilarity(), None,
        )  # fmt: skip
        (grad,) = torch.autograd.grad(loss, leaf_outputs)
        results.append((loss, grad))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])


def test_run_name_part_tells_formulas_apart() -> None:
    first = FormulaLoss("softplus(neg - pos)", 8, 0.05).debug_str()
    second = FormulaLoss("max(0, 1 - pos + neg)", 8, 0.05).debug_str()
    same = FormulaLoss("softplus((neg - pos))", 8, 0.05).debug_str()
    assert first != second and first == same and first.endswith("-t0.05-n8")

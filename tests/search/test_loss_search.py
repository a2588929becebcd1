"""AutoLossGen's parts (controller, validity check) and ``loss_search`` end to end on Ray."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from generative_recommenders.modeling.formula import parse
from generative_recommenders.search.commands import run_loss_search_flags
from generative_recommenders.search.controller import (
    FormulaController,
    Reinforce,
    tokens_to_formula,
)
from generative_recommenders.search.validity import check
from tests.training.conftest import REPO, TINY_CONFIG, free_port


def test_prefix_tokens_build_the_tree() -> None:
    tokens = ["softplus", "sub", "neg", "pos"]
    assert tokens_to_formula(tokens) == parse("softplus(neg - pos)")
    assert tokens_to_formula(["add", "negate", "pos", "one"]) == parse("neg(pos) + 1")
    with pytest.raises(ValueError):
        tokens_to_formula(["add", "pos"])
    with pytest.raises(ValueError):
        tokens_to_formula(["pos", "neg"])


def test_sampled_formulas_are_complete_short_and_parse_back() -> None:
    controller = FormulaController(max_tokens=7)
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        sample = controller.sample(generator)
        assert 1 <= len(sample.tokens) <= 7
        assert parse(sample.formula.text()) == sample.formula
        assert torch.isfinite(sample.log_prob) and sample.log_prob <= 0


def test_reinforce_makes_a_rewarded_formula_more_likely() -> None:
    torch.manual_seed(0)
    controller = FormulaController(max_tokens=5)
    policy = Reinforce(controller, learning_rate=0.05)
    generator = torch.Generator().manual_seed(1)

    def rewarded(tokens: list[str]) -> bool:  # formulas that are a difference at the top
        return tokens[0] == "sub"

    def probability() -> float:
        draws = torch.Generator().manual_seed(2)
        return sum(rewarded(controller.sample(draws).tokens) for _ in range(300)) / 300

    before = probability()
    assert before < 0.25
    for _ in range(40):
        samples = [controller.sample(generator) for _ in range(8)]
        rewards = [policy.advantage(float(rewarded(s.tokens))) for s in samples]
        policy.update(samples, rewards)
    assert probability() > before + 0.3


@pytest.mark.parametrize(
    "formula, reason",
    [
        ("softplus(neg - pos)", "valid"),
        ("neg - pos", "valid"),
        ("max(0, 1 - pos + neg)", "valid"),
        ("pos - neg", "rises with the positive's logit"),
        ("softplus(neg)", "does not depend on both"),
        ("log(neg - pos)", "not finite"),
        ("exp(100 * (neg - pos))", "not finite"),
        ("score * label", "not a pairwise formula"),
    ],
)
def test_validity_rules(formula, reason) -> None:
    verdict, values = check(parse(formula), [])
    assert verdict.reason.startswith(reason)
    assert verdict.ok == (reason == "valid") and (values is not None) == verdict.ok


def test_a_formula_equal_up_to_a_constant_is_a_duplicate() -> None:
    first, values = check(parse("neg - pos + 1"), [])
    assert first.ok
    second, _ = check(parse("2 * (neg - pos) / 2"), [values])
    assert second.reason == "same values as a formula already kept"
    third, _ = check(parse("softplus(neg - pos)"), [values])
    assert third.ok


def _flags(tmp_path: pathlib.Path, data_dir: pathlib.Path, **overrides):
    values = dict(
        gin_config_file=[str(TINY_CONFIG)], gin_bindings=[], budget=3, proxy_epochs=1, top_k=1,
        seed=0, out=str(tmp_path / "out"), address="", data_dir=str(data_dir), batch_size=3,
        seeds=1, final_epochs=1, cpus_per_task=1.0, max_tokens=11,
    )  # fmt: skip
    values.update(overrides)
    return SimpleNamespace(**values)


def test_loss_search_runs_its_three_phases(tmp_path, tiny_data_dir) -> None:
    out = tmp_path / "out"
    args = [
        f"--gin_config_file={TINY_CONFIG}", f"--data_dir={tiny_data_dir}", f"--out={out}",
        "--budget=3", "--proxy_epochs=1", "--top_k=1", "--seeds=1", "--final_epochs=1",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "generative_recommenders.loss_search", *args],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "formulas.jsonl").read_text().splitlines()]
    trained = [r for r in records if not r["error"].startswith("not trained")]
    assert len({r["prefix"] for r in trained}) == 3  # the budget counts trained formulas
    for record in trained:
        assert record["score"] is None or 0.0 <= record["score"] <= 1.0
        assert check(parse(record["formula"]), [])[0].ok  # only valid formulas are trained
    checked = json.loads((out / "checked.json").read_text())
    assert {c["formula"] for c in checked} == {r["formula"] for r in records}
    summary = json.loads((out / "final.json").read_text())
    names = [row["name"] for row in summary["rows"]]
    assert names[-3:] == ["BCE", "BPR", "SampledSoftmax"]
    assert len(names) == 3 + min(1, summary["valid"])
    for row in summary["rows"]:
        assert row["runs"] == 1 and row["failed"] == 0, row
        mean, _ = row["test"]["ndcg@10"]
        assert 0.0 <= mean <= row["test"]["hr@10"][0] <= 1.0
    assert "| BPR |" in (out / "final.md").read_text() and "| BPR |" in result.stdout


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"budget": 0}, "--budget=0: expected at least 1"),
        ({"address": "ray://127.0.0.1:PORT"}, "cannot reach the Ray cluster"),
        ({"gin_bindings": ["train_fn.num_negatives = 0"]}, "train_fn.num_negatives=0"),
        ({"gin_bindings": ["FormulaLos.formula = 'pos'"]}, "FormulaLos"),
    ],
)
def test_bad_input_stops_before_any_training(
    tmp_path, tiny_data_dir, capsys, overrides, expected
) -> None:
    if "address" in overrides:
        overrides["address"] = overrides["address"].replace("PORT", str(free_port()))
    assert run_loss_search_flags(_flags(tmp_path, tiny_data_dir, **overrides)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not (tmp_path / "out").exists()


def test_formula_loss_bindings_are_checked_by_main(tmp_path, tiny_data_dir) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, str(REPO / "main.py"), f"--gin_config_file={TINY_CONFIG}",
            f"--data_dir={tiny_data_dir}", f"--exp_dir={tmp_path}", f"--ckpt_dir={tmp_path}",
            '--gin_bindings=train_fn.loss_module = "FormulaLoss"']  # fmt: skip
    for extra, expected in (
        ([], "needs FormulaLoss.formula"),
        (['--gin_bindings=FormulaLoss.formula = "softplus(neg - pos"'], "expected ')'"),
        (['--gin_bindings=FormulaLoss.formula = "system(pos)"'], "unknown operator 'system'"),
    ):
        result = subprocess.run(base + extra, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], result.stderr

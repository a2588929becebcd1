"""AutoLossGen (SIGIR'22) on this trainer: ``python -m generative_recommenders.loss_search``.

Phase 1, search: a :class:`~.controller.FormulaController` samples loss formulas; each trains a
proxy model (the user's configuration with ``FormulaLoss``, ``proxy_epochs`` epochs, validation
protocol, never the test split) as a parallel Ray task; its score is the best validation NDCG@10
and its reward the gain over a moving baseline (REINFORCE). A formula seen before reuses its score.
Phase 2, validity check (:mod:`.validity`): finite, lowers the loss as the positive rises above
the negatives, not a duplicate. Phase 3, effectiveness test: the ``top_k`` valid formulas train to
the end with ``seeds`` seeds next to BCE, BPR and sampled softmax under the validation protocol,
and their test metrics (best checkpoint, once per run) are reported as mean ± standard error.

Output folder: ``formulas.jsonl`` (every sampled formula, score, reward), ``checked.json`` (phase
2), ``final.json`` and ``final.md`` (phase 3), and each training's run folder under ``runs/``.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from generative_recommenders.atomic import atomic_write_text
from generative_recommenders.errors import UserInputError
from generative_recommenders.search.cluster import (
    check_address,
    ray_session,
    train_in_this_process,
)
from generative_recommenders.search.space import binding_line

_LOG = logging.getLogger(__name__)

SCORE_METRIC = "ndcg@10"
# What a formula that fails the validity rules scores for the controller (below any real metric),
# so the policy learns to write valid ones; a trained formula whose run failed scores 0.
INVALID_SCORE = -0.1
MAX_SAMPLES_PER_TRAINED = 200
REPORTED = ("hr@10", "ndcg@10", "mrr")
# The baselines of phase 3: (name, bindings). BPR is the formula softplus(neg - pos).
BASELINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # BCE has one negative and no temperature of its own: unbind what the base config may set
    # for the other losses (an explicit value BCE cannot take is refused, not ignored).
    (
        "BCE",
        (
            'train_fn.loss_module = "BCELoss"',
            "train_fn.temperature = 1.0",
            "train_fn.num_negatives = None",
        ),
    ),
    (
        "BPR",
        ('train_fn.loss_module = "FormulaLoss"', 'FormulaLoss.formula = "softplus(neg - pos)"'),
    ),
    ("SampledSoftmax", ('train_fn.loss_module = "SampledSoftmaxLoss"',)),
)


@dataclass(frozen=True)
class LossSearchSettings:
    config_files: tuple[str, ...]
    fixed_bindings: tuple[str, ...] = ()
    budget: int = 32
    proxy_epochs: int = 3
    top_k: int = 3
    seed: int = 0
    out: str = ""
    address: str = ""
    data_dir: str = "tmp/"
    batch_size: int = 4
    seeds: int = 3
    final_epochs: int | None = None
    cpus_per_task: float = 1.0
    max_tokens: int = 11


@dataclass
class Evaluated:
    """One sampled formula and what its proxy training gave."""

    index: int
    formula: str
    prefix: str
    score: float | None
    reward: float
    baseline: float
    error: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class TrainingJob:
    """One training run for a Ray task: the bindings, where it writes, whether it tests."""

    config_files: tuple[str, ...]
    bindings: tuple[str, ...]
    data_dir: str
    run_root: str
    final_test: bool
    threads: int


@dataclass
class FinalRow:
    name: str
    formula: str
    valid: list[float] = field(default_factory=list)
    test: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def validate(settings: LossSearchSettings) -> None:
    from generative_recommenders.config.build import validate_choices
    from generative_recommenders.config.run import RunOptions, load_config
    from generative_recommenders.data.store import SequenceStore

    for name in ("budget", "proxy_epochs", "top_k", "batch_size", "seeds"):
        if getattr(settings, name) < 1:
            raise UserInputError(f"--{name}={getattr(settings, name)}: expected at least 1")
    if settings.final_epochs is not None and settings.final_epochs < 1:
        raise UserInputError(f"--final_epochs={settings.final_epochs}: expected at least 1")
    if settings.max_tokens < 3:
        raise UserInputError(f"--max_tokens={settings.max_tokens}: expected at least 3")
    if not settings.config_files:
        raise UserInputError("pass at least one --gin_config_file (see configs/)")
    check_address(settings.address)
    for _, extra in BASELINES:
        options = RunOptions(settings.config_files, settings.fixed_bindings + extra)
        config = load_config(options)
        validate_choices(config)
    SequenceStore.open(settings.data_dir, config.dataset_name)
    out = Path(settings.out)
    if out.exists() and any(out.iterdir()):
        raise UserInputError(f"--out={out}: folder exists and is not empty; pass a new one")


def train_job(job: TrainingJob) -> dict:
    """Run one training in this process (a Ray task); returns its final metrics."""
    from generative_recommenders.config.run import RunOptions

    options = RunOptions(
        gin_config_files=job.config_files,
        gin_bindings=job.bindings,
        data_dir=job.data_dir,
        exp_dir=str(Path(job.run_root) / "exps"),
        ckpt_dir=str(Path(job.run_root) / "ckpts"),
        final_test=job.final_test,
    )
    return train_in_this_process(options, "cpu", job.threads)


def _protocol(settings: LossSearchSettings, epochs: int | None) -> tuple[str, ...]:
    extra = (
        'train_fn.eval_split = "valid"',
        f'train_fn.selection_metric = "{SCORE_METRIC}"',
        "train_fn.full_eval_every_n = 1",
    )
    if epochs is not None:
        extra += (f"train_fn.num_epochs = {epochs}",)
    return tuple(settings.fixed_bindings) + extra


def formula_bindings(formula: str) -> tuple[str, ...]:
    return ('train_fn.loss_module = "FormulaLoss"', binding_line("FormulaLoss.formula", formula))


def run_loss_search(settings: LossSearchSettings) -> dict:
    """All three phases; returns the summary written to ``final.json``."""
    validate(settings)
    out = Path(settings.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with ray_session(settings.address):
        evaluated = search_phase(settings, out)
        checked = check_phase(evaluated, out)
        summary = effectiveness_phase(settings, checked, out)
    return summary


def _submit(settings: LossSearchSettings, jobs: Sequence[TrainingJob]) -> list[tuple[dict, str]]:
    """Run jobs as parallel Ray tasks; (result, error line) per job, in order."""
    import ray

    task = ray.remote(num_cpus=settings.cpus_per_task)(train_job)
    refs = [task.remote(job) for job in jobs]
    outcomes = []
    for ref in refs:
        try:
            outcomes.append((ray.get(ref), ""))
        except Exception as error:  # a failed training is a result of the search, not its end
            lines = [line for line in str(error).splitlines() if line.strip()]
            outcomes.append(({}, lines[-1].strip()[:300] if lines else type(error).__name__))
    return outcomes


def search_phase(settings: LossSearchSettings, out: Path) -> list[Evaluated]:
    """Phase 1: sample formulas in batches until ``budget`` have been trained; update the
    controller after each batch.

    A formula that fails the validity check's rules 1-2 (:mod:`.validity`) is not trained: it
    scores :data:`INVALID_SCORE` (so the controller learns to avoid such formulas) and is logged
    with the reason. At most ``MAX_SAMPLES_PER_TRAINED * budget`` formulas are sampled in all.
    """
    import torch

    from generative_recommenders.search.controller import FormulaController, Reinforce
    from generative_recommenders.search.validity import check

    torch.manual_seed(settings.seed)
    controller = FormulaController(max_tokens=settings.max_tokens)
    policy = Reinforce(controller)
    generator = torch.Generator().manual_seed(settings.seed)
    scores: dict[str, tuple[float | None, str]] = {}
    evaluated: list[Evaluated] = []
    trained = 0
    while trained < settings.budget and len(evaluated) < MAX_SAMPLES_PER_TRAINED * settings.budget:
        samples = [controller.sample(generator) for _ in range(settings.batch_size)]
        fresh: dict[str, str] = {}
        for sample in samples:
            prefix = sample.formula.prefix()
            if prefix in scores or prefix in fresh:
                continue
            verdict, _ = check(sample.formula, [])
            if verdict.ok and trained + len(fresh) < settings.budget:
                fresh[prefix] = sample.formula.text()
            elif not verdict.ok:
                scores[prefix] = (None, f"not trained: {verdict.reason}")
        jobs = [
            TrainingJob(
                settings.config_files,
                _protocol(settings, settings.proxy_epochs) + formula_bindings(text),
                str(Path(settings.data_dir).resolve()),
                str(out / "runs" / "proxy" / f"{trained + i:04d}"),
                final_test=False,
                threads=max(1, int(settings.cpus_per_task)),
            )
            for i, text in enumerate(fresh.values())
        ]
        started = time.perf_counter()
        for prefix, (result, error) in zip(fresh, _submit(settings, jobs), strict=True):
            score = result.get("valid", {}).get(SCORE_METRIC) if result else None
            if score is not None and not math.isfinite(score):
                score, error = None, error or "non-finite validation metric"
            scores[prefix] = (score, error)
        trained += len(jobs)
        seconds = (time.perf_counter() - started) / max(len(jobs), 1) if jobs else 0.0
        rewards = []
        for sample in samples:
            prefix = sample.formula.prefix()
            if prefix not in scores:  # valid, but past the budget: not trained, not learned from
                rewards.append(0.0)
                continue
            score, error = scores[prefix]
            if score is None:
                score_for_policy = INVALID_SCORE if error.startswith("not trained") else 0.0
            else:
                score_for_policy = score
            reward = policy.advantage(score_for_policy)
            rewards.append(reward)
            record = Evaluated(
                len(evaluated), sample.formula.text(), prefix, score, reward,
                policy.baseline or 0.0, error, seconds if prefix in fresh else 0.0,
            )  # fmt: skip
            evaluated.append(record)
            with open(out / "formulas.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(record.__dict__) + "\n")
            if prefix in fresh:
                _LOG.info(
                    "formula %d (%d/%d trained): %s -> valid %s %s (reward %+.4f)%s",
                    record.index, trained, settings.budget, record.formula, SCORE_METRIC,
                    "failed" if score is None else f"{score:.4f}", reward,
                    f" [{error}]" if error else "",
                )  # fmt: skip
        policy.update(samples, rewards)
    return evaluated


def check_phase(evaluated: Sequence[Evaluated], out: Path) -> list[dict]:
    """Phase 2: the distinct formulas, best score first, each with its validity verdict."""
    from generative_recommenders.modeling.formula import parse
    from generative_recommenders.search.validity import check

    distinct: dict[str, Evaluated] = {}
    for record in evaluated:
        distinct.setdefault(record.prefix, record)
    ordered = sorted(distinct.values(), key=lambda r: -1.0 if r.score is None else r.score)[::-1]
    kept_values: list = []
    checked = []
    for record in ordered:
        if record.score is None:
            verdict_ok = False
            reason = (
                record.error
                if record.error.startswith("not trained")
                else (f"proxy training failed: {record.error}")
            )
        else:
            verdict, values = check(parse(record.formula), kept_values)
            verdict_ok, reason = verdict.ok, verdict.reason
            if values is not None:
                kept_values.append(values)
        checked.append(
            {
                "formula": record.formula,
                "score": record.score,
                "valid": verdict_ok,
                "reason": reason,
            }
        )
    atomic_write_text(out / "checked.json", json.dumps(checked, indent=1))
    return checked


def effectiveness_phase(settings: LossSearchSettings, checked: Sequence[dict], out: Path) -> dict:
    """Phase 3: top formulas and the baselines, ``seeds`` seeds each, tested once per run."""
    winners = [c["formula"] for c in checked if c["valid"]][: settings.top_k]
    entries = [(f"formula {i + 1}", f, formula_bindings(f)) for i, f in enumerate(winners)]
    entries += [(name, "", bindings) for name, bindings in BASELINES]
    jobs, owners = [], []
    for name, formula, bindings in entries:
        for seed in range(settings.seeds):
            folder = name.replace(" ", "_")
            jobs.append(
                TrainingJob(
                    settings.config_files,
                    _protocol(settings, settings.final_epochs)
                    + bindings
                    + (f"train_fn.random_seed = {settings.seed + seed}",),
                    str(Path(settings.data_dir).resolve()),
                    str(out / "runs" / "final" / f"{folder}-seed{seed}"),
                    final_test=True,
                    threads=max(1, int(settings.cpus_per_task)),
                )
            )
            owners.append((name, formula))
    rows: dict[str, FinalRow] = {}
    for (name, formula), (result, error) in zip(owners, _submit(settings, jobs), strict=True):
        row = rows.setdefault(name, FinalRow(name, formula))
        if error or "test" not in result:  # failed, or stopped (a signal) before its test
            row.errors.append(error or f"no test metrics ({', '.join(result) or 'no result'})")
            continue
        row.valid.append(float(result["valid"].get(SCORE_METRIC, math.nan)))
        for metric in REPORTED:
            row.test.setdefault(metric, []).append(float(result["test"][metric]))
    summary = {
        "budget": settings.budget,
        "sampled": len(checked),
        "trained": sum(not str(c["reason"]).startswith("not trained") for c in checked),
        "valid": sum(bool(c["valid"]) for c in checked),
        "rows": [_summarise(row) for row in rows.values()],
    }
    atomic_write_text(out / "final.json", json.dumps(summary, indent=1))
    atomic_write_text(out / "final.md", format_table(summary))
    return summary


def _summarise(row: FinalRow) -> dict:
    def mean_se(values: list[float]) -> list[float | None]:
        if not values:
            return [None, None]
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
        return [statistics.fmean(values), se]

    return {
        "name": row.name,
        "formula": row.formula,
        "runs": len(row.valid),
        "failed": len(row.errors),
        "errors": row.errors,
        f"valid_{SCORE_METRIC}": mean_se(row.valid),
        "test": {metric: mean_se(values) for metric, values in row.test.items()},
    }


def format_table(summary: dict) -> str:
    header = f"| loss | formula | runs | valid {SCORE_METRIC} | " + " | ".join(
        f"test {m}" for m in REPORTED
    )
    lines = [header + " |", "|" + "---|" * (4 + len(REPORTED))]
    for row in summary["rows"]:

        def cell(pair: list) -> str:
            return "failed" if pair[0] is None else f"{pair[0]:.4f} ± {pair[1]:.4f}"

        tests = " | ".join(cell(row["test"].get(m, [None, None])) for m in REPORTED)
        formula = f"`{row['formula']}`" if row["formula"] else ""
        lines.append(
            f"| {row['name']} | {formula} | {row['runs']} | "
            f"{cell(row[f'valid_{SCORE_METRIC}'])} | {tests} |"
        )
    note = (
        f"\n{summary['sampled']} distinct formulas sampled, {summary['trained']} trained as "
        f"proxies (budget {summary['budget']}), {summary['valid']} passed the validity check. Mean ± standard error over seeds; test "
        "metrics of each run's best validation checkpoint, evaluated once.\n"
    )
    return "\n".join(lines) + "\n" + note

"""Glue between the search commands' absl flags and the searches (kept apart to test it)."""

from __future__ import annotations

import datetime
import sys

from generative_recommenders.errors import UserInputError
from generative_recommenders.logs import configure_logging

SHOWN = ("hr@10", "ndcg@10", "hr@50", "ndcg@50", "mrr")


def run_tune_flags(flags) -> int:
    """Run ``tune`` from parsed flags; returns the exit status (2 for bad input)."""
    configure_logging()
    from generative_recommenders.search.tuning import TuneSettings, run_search

    name = flags.name or f"tune-{datetime.datetime.now():%Y-%m-%d-%H%M%S}"
    settings = TuneSettings(
        config_files=tuple(flags.gin_config_file),
        search_space=flags.search_space,
        fixed_bindings=tuple(flags.gin_bindings),
        num_samples=flags.num_samples,
        max_epochs=flags.max_epochs,
        scheduler=flags.scheduler,
        metric=flags.metric,
        cpus_per_trial=flags.cpus_per_trial,
        gpus_per_trial=flags.gpus_per_trial,
        name=name,
        exp_dir=flags.exp_dir,
        data_dir=flags.data_dir,
        resume=flags.resume,
        address=flags.address,
        seed=flags.seed,
        grace_period=flags.grace_period,
    )
    try:
        summary = run_search(settings)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    metric = summary["metric"]
    valid = summary["valid"]
    lines = [
        f"search {summary['name']}: {summary['trials']} trials, {summary['failed']} failed",
        f"best trial {summary['best_trial']}: validation {metric} {valid[metric]:.4f} "
        f"(epoch {valid['epoch']})",
        "  " + ", ".join(f"{k} = {v}" for k, v in sorted(summary["best_bindings"].items())),
        "test (best checkpoint, once): "
        + ", ".join(f"{k} {summary['test'][k]:.4f}" for k in SHOWN if k in summary["test"]),
        f"results: {summary['out_dir']}/results.csv, best bindings: {summary['out_dir']}/best.gin",
    ]
    return "\n".join(lines)


def run_loss_search_flags(flags) -> int:
    """Run ``loss_search`` from parsed flags; returns the exit status (2 for bad input)."""
    configure_logging()
    from generative_recommenders.search.loss_search import LossSearchSettings, run_loss_search

    out = flags.out or f"exps/loss_search/{datetime.datetime.now():%Y-%m-%d-%H%M%S}"
    settings = LossSearchSettings(
        config_files=tuple(flags.gin_config_file),
        fixed_bindings=tuple(flags.gin_bindings),
        budget=flags.budget,
        proxy_epochs=flags.proxy_epochs,
        top_k=flags.top_k,
        seed=flags.seed,
        out=out,
        address=flags.address,
        data_dir=flags.data_dir,
        batch_size=flags.batch_size,
        seeds=flags.seeds,
        final_epochs=flags.final_epochs,
        cpus_per_task=flags.cpus_per_task,
        max_tokens=flags.max_tokens,
    )
    try:
        summary = run_loss_search(settings)
    except UserInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    from generative_recommenders.search.loss_search import format_table

    print(format_table(summary))
    print(f"output: {out} (formulas.jsonl, checked.json, final.json, final.md)")
    return 0

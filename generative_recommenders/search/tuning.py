"""Hyperparameter search over gin bindings on Ray Tune (``python -m generative_recommenders.tune``).

Each trial is one ordinary training run (``config.run.run_training``, one process) with the
sampled bindings added after the user's, under the validation protocol: it reports the full
validation metrics after every epoch to Ray Tune (ASHA stops weak trials early) and never evaluates
the test split. When every trial has ended, the best trial (its best epoch under ``metric``) is
written as ``best.gin`` and its best checkpoint is evaluated once on the test split.

Output folder ``<exp_dir>/search/<name>/``: ``results.csv`` (one row per trial), ``best.gin``,
``test_metrics.json``, ``trials/<trial id>/{exps,ckpts}`` (each trial's TensorBoard run folder and
checkpoints: ``tensorboard --logdir <out>/trials``), and ``ray/`` (Ray Tune's own experiment
state, which ``--resume`` restores).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
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
from generative_recommenders.search.space import (
    Distribution,
    binding_line,
    check_space,
    load_search_space,
)

_LOG = logging.getLogger(__name__)

SCHEDULERS = ("asha", "fifo")


@dataclass(frozen=True)
class TuneSettings:
    """Everything ``tune`` needs; field names follow its command-line flags."""

    config_files: tuple[str, ...]
    search_space: str
    fixed_bindings: tuple[str, ...] = ()
    num_samples: int = 10
    max_epochs: int = 20
    scheduler: str = "asha"
    metric: str = "ndcg@10"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    name: str = "tune"
    exp_dir: str = "exps/"
    data_dir: str = "tmp/"
    resume: bool = False
    address: str = ""
    seed: int = 0
    grace_period: int = 1

    @property
    def out_dir(self) -> Path:
        return Path(self.exp_dir).resolve() / "search" / self.name


@dataclass(frozen=True)
class TrialSetup:
    """What every trial needs, sent once to the workers (absolute paths: trials may run elsewhere)."""

    config_files: tuple[str, ...]
    protocol_bindings: tuple[str, ...]
    data_dir: str
    trials_dir: str
    device: str
    threads: int


@dataclass
class TrialRow:
    trial: str
    status: str
    best_value: float | None
    best_epoch: int | None
    epochs_run: int
    bindings: dict = field(default_factory=dict)
    error: str = ""
    folder: str = ""


def protocol_bindings(settings: TuneSettings) -> tuple[str, ...]:
    """The user's fixed bindings plus what makes a trial a search trial (validation protocol)."""
    return tuple(settings.fixed_bindings) + (
        'train_fn.eval_split = "valid"',
        f"train_fn.num_epochs = {settings.max_epochs}",
        f'train_fn.selection_metric = "{settings.metric}"',
        "train_fn.full_eval_every_n = 1",
    )


def validate_settings(settings: TuneSettings) -> list[Distribution]:
    """Every check that can fail before a trial starts; returns the parsed search space."""
    from generative_recommenders.config.run import RunOptions, load_config
    from generative_recommenders.data.store import SequenceStore

    if settings.num_samples < 1:
        raise UserInputError(f"--num_samples={settings.num_samples}: expected at least 1")
    if settings.max_epochs < 1:
        raise UserInputError(f"--max_epochs={settings.max_epochs}: expected at least 1")
    if settings.scheduler not in SCHEDULERS:
        raise UserInputError(f"--scheduler={settings.scheduler!r}: expected one of {SCHEDULERS}")
    if settings.cpus_per_trial <= 0:
        raise UserInputError(f"--cpus_per_trial={settings.cpus_per_trial}: expected > 0")
    if not 0 <= settings.gpus_per_trial <= 1:
        raise UserInputError(
            f"--gpus_per_trial={settings.gpus_per_trial}: expected 0..1 (a trial is one process)"
        )
    if not settings.name or "/" in settings.name or settings.name.startswith("."):
        raise UserInputError(f"--name={settings.name!r}: expected a plain folder name")
    if not settings.config_files:
        raise UserInputError("pass at least one --gin_config_file (see configs/)")
    _check_metric(settings.metric)
    check_address(settings.address)
    space = load_search_space(settings.search_space)
    fixed = protocol_bindings(settings)
    config = load_config(RunOptions(tuple(settings.config_files), fixed))
    SequenceStore.open(settings.data_dir, config.dataset_name)
    check_space(space, settings.config_files, fixed, settings.search_space)
    out = settings.out_dir
    if settings.resume and not (out / "ray").is_dir():
        raise UserInputError(f"--resume: no search to resume at {out}")
    if not settings.resume and out.exists():
        raise UserInputError(f"{out} exists: pass another --name, or --resume to continue it")
    return space


def _check_metric(metric: str) -> None:
    from generative_recommenders.evaluation import metrics as m

    known = [f"hr@{k}" for k in m.HR_KS] + [f"ndcg@{k}" for k in m.NDCG_KS] + ["mrr"]
    if metric not in known:
        raise UserInputError(f"--metric={metric!r}: expected one of {', '.join(known)}")


def run_trial(sampled: dict, setup: TrialSetup) -> None:
    """One Ray Tune trial: a training run reporting its validation metrics every epoch."""
    from ray import tune

    from generative_recommenders.config.run import RunOptions

    trial_id = tune.get_context().get_trial_id()
    trial_dir = Path(setup.trials_dir) / trial_id
    bindings = setup.protocol_bindings + tuple(
        binding_line(name, value) for name, value in sorted(sampled.items())
    )
    record = {"sampled": sampled, "bindings": list(bindings)}
    atomic_write_text(trial_dir / "trial.json", json.dumps(record, indent=1))
    checkpoints = trial_dir / "ckpts"
    previous = sorted(checkpoints.glob("*/*/last.pt"), key=lambda p: p.stat().st_mtime)
    options = RunOptions(
        gin_config_files=setup.config_files,
        gin_bindings=bindings,
        data_dir=setup.data_dir,
        exp_dir=str(trial_dir / "exps"),
        ckpt_dir=str(checkpoints),
        resume=str(previous[-1]) if previous else None,
        final_test=False,
    )

    def report(epoch: int, metrics: dict[str, float], improved: bool) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        tune.report({**values, "epoch": epoch + 1})

    result = train_in_this_process(options, setup.device, setup.threads, report)
    atomic_write_text(trial_dir / "finished.json", json.dumps(result, indent=1, default=str))


def run_search(settings: TuneSettings) -> dict:
    """Validate, run every trial on Ray Tune, write results, test the best trial once."""
    space = validate_settings(settings)
    out = settings.out_dir
    trials_dir = out / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    from generative_recommenders.training.launch import resolve_device

    setup = TrialSetup(
        config_files=tuple(str(Path(f)) for f in settings.config_files),
        protocol_bindings=protocol_bindings(settings),
        data_dir=str(Path(settings.data_dir).resolve()),
        trials_dir=str(trials_dir),
        device="cuda" if settings.gpus_per_trial > 0 else resolve_device("cpu"),
        threads=max(1, int(settings.cpus_per_trial)),
    )
    with ray_session(settings.address):
        grid = _fit(settings, space, setup)
        rows = collect_rows(grid, settings.metric, trials_dir, settings.max_epochs)
        write_results_csv(out / "results.csv", rows, [d.binding for d in space], settings.metric)
        best = best_row(rows)
        if best is None:
            raise UserInputError(
                f"no trial reported a validation {settings.metric} (see {out / 'results.csv'})"
            )
        write_best_gin(out / "best.gin", settings, best)
        test = _test_best(settings, setup, best)
    summary = {
        "name": settings.name,
        "metric": settings.metric,
        "best_trial": best.trial,
        "best_bindings": best.bindings,
        "valid": {settings.metric: best.best_value, "epoch": best.best_epoch},
        "test": test,
        "trials": len(rows),
        "failed": sum(r.status == "error" for r in rows),
        "out_dir": str(out),
    }
    atomic_write_text(out / "test_metrics.json", json.dumps(summary, indent=1))
    return summary


def _fit(settings: TuneSettings, space: Sequence[Distribution], setup: TrialSetup):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    trainable = tune.with_resources(
        tune.with_parameters(run_trial, setup=setup),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial},
    )
    ray_dir = settings.out_dir / "ray"
    if settings.resume:
        tuner = tune.Tuner.restore(str(ray_dir), trainable, resume_unfinished=True)
        return tuner.fit()
    scheduler = (
        ASHAScheduler(
            time_attr="epoch", max_t=settings.max_epochs, grace_period=settings.grace_period
        )
        if settings.scheduler == "asha"
        else FIFOScheduler()
    )
    tuner = tune.Tuner(
        trainable,
        param_space={d.binding: _ray_domain(d) for d in space},
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode="max",
            num_samples=settings.num_samples,
            scheduler=scheduler,
            search_alg=BasicVariantGenerator(random_state=settings.seed),
        ),
        run_config=tune.RunConfig(
            name="ray", storage_path=str(settings.out_dir), verbose=1, log_to_file=True
        ),
    )
    return tuner.fit()


def _ray_domain(distribution: Distribution):
    from ray import tune

    kind, args = distribution.kind, distribution.args
    if kind == "choice":
        return tune.choice([list(a) if isinstance(a, tuple) else a for a in args])
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](
        *args
    )


def collect_rows(grid, metric: str, trials_dir: Path, max_epochs: int) -> list[TrialRow]:
    """One row per trial of a Ray ``ResultGrid``: its best validation value and how it ended.

    Status: ``error`` (raised), ``finished`` (ran every epoch, or stopped by its own early-stopping
    patience), ``stopped early`` (by the scheduler).
    """
    rows = []
    folders = {p.name: p for p in trials_dir.iterdir() if p.is_dir()}
    for result in grid:
        trial_id = str((result.metrics or {}).get("trial_id", ""))
        if not trial_id:  # ended before its first report: find its folder by name
            trial_id = next((t for t in folders if t in Path(result.path).name), "?")
        folder = folders.get(trial_id)
        frame = result.metrics_dataframe
        best_value, best_epoch, epochs = None, None, 0
        if frame is not None and metric in getattr(frame, "columns", []):
            values = frame[metric].astype(float)
            if values.notna().any():
                index = values.idxmax()
                best_value = float(values[index])
                best_epoch = int(frame["epoch"][index]) - 1
                epochs = int(frame["epoch"].max())
        if result.error is not None:
            status = "error"
        elif epochs >= max_epochs or (folder is not None and (folder / "finished.json").is_file()):
            status = "finished"
        else:
            status = "stopped early"
        bindings = dict(result.config or {})
        if not bindings and folder is not None and (folder / "trial.json").is_file():
            bindings = json.loads((folder / "trial.json").read_text())["sampled"]
        error = _error_line(result.error) if result.error is not None else ""
        rows.append(
            TrialRow(trial_id, status, best_value, best_epoch, epochs, bindings, error[:300],
                     str(folder or ""))
        )  # fmt: skip
    return sorted(rows, key=lambda r: r.trial)


def _error_line(error: BaseException) -> str:
    """The exception's own line ("ValueError: ...") out of Ray's wrapped traceback text."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"^[\w.]*(Error|Exception|Exit)\b.*:", line):
            return line
    return lines[-1] if lines else type(error).__name__


def best_row(rows: Sequence[TrialRow]) -> TrialRow | None:
    scored = [r for r in rows if r.best_value is not None and math.isfinite(r.best_value)]
    return max(scored, key=lambda r: r.best_value) if scored else None


def write_results_csv(
    path: Path, rows: Sequence[TrialRow], bindings: Sequence[str], metric: str
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["trial", "status", f"best_valid_{metric}", "best_epoch", "epochs_run", *bindings,
         "error", "folder"]
    )  # fmt: skip
    for r in rows:
        value = "" if r.best_value is None else f"{r.best_value:.6f}"
        epoch = "" if r.best_epoch is None else r.best_epoch
        writer.writerow(
            [r.trial, r.status, value, epoch, r.epochs_run,
             *(r.bindings.get(b, "") for b in bindings), r.error, r.folder]
        )  # fmt: skip
    atomic_write_text(path, buffer.getvalue())


def write_best_gin(path: Path, settings: TuneSettings, best: TrialRow) -> None:
    lines = [
        f"# Best trial {best.trial} of search {settings.name!r}: validation {settings.metric} "
        f"{best.best_value:.4f} at epoch {best.best_epoch}.",
        "# Train it: python main.py --gin_config_file=" + str(path),
        "",
        *(f"include '{f}'" for f in settings.config_files),
        "",
        "# The search's protocol and fixed bindings",
        *protocol_bindings(settings),
        "",
        "# The best trial's sampled bindings",
        *(binding_line(k, v) for k, v in sorted(best.bindings.items())),
        "",
    ]
    atomic_write_text(path, "\n".join(lines))


def _test_best(settings: TuneSettings, setup: TrialSetup, best: TrialRow) -> dict:
    """The best trial's best checkpoint on the test split, evaluated once (as a Ray task)."""
    import ray

    from generative_recommenders.config.run import RunOptions, evaluate_checkpoint

    folder = Path(best.folder)
    checkpoints = sorted(folder.glob("ckpts/*/*/best.pt"))
    if not checkpoints:
        raise UserInputError(f"{folder}: the best trial left no best.pt checkpoint")
    bindings = setup.protocol_bindings + tuple(
        binding_line(k, v) for k, v in sorted(best.bindings.items())
    )
    options = RunOptions(setup.config_files, bindings, data_dir=setup.data_dir)
    task = ray.remote(num_cpus=settings.cpus_per_trial, num_gpus=settings.gpus_per_trial)(
        evaluate_checkpoint
    )
    return ray.get(task.remote(options, checkpoints[-1], "test"))

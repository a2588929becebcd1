"""One training run: gin → validated config → components → :class:`Trainer`, on every worker."""

from __future__ import annotations

import datetime
import logging
import platform
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import gin
import torch
import torch.distributed as dist

from generative_recommenders import __version__
from generative_recommenders.config.build import build_training, validate
from generative_recommenders.config.registry import operative_config, parse_gin
from generative_recommenders.config.train import TrainConfig, train_fn
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import UserInputError
from generative_recommenders.logs import configure_logging
from generative_recommenders.ops.allocator import tune_allocator
from generative_recommenders.training import checkpoint as ckpt
from generative_recommenders.training.distributed import (
    DistributedContext,
    finish_distributed,
    init_distributed,
    is_distributed,
    set_cpu_threads,
    shutdown_distributed,
)
from generative_recommenders.training.launch import Topology, launch
from generative_recommenders.training.preemption import StopSignals
from generative_recommenders.training.run_logging import RunLogger
from generative_recommenders.training.seeding import seed_everything
from generative_recommenders.training.trainer import Trainer

_LOG = logging.getLogger(__name__)

EvaluationCallback = Callable[[int, dict[str, float], bool], None]


@dataclass(frozen=True)
class RunOptions:
    """The command line's non-topology flags (they cross the spawn as a plain object)."""

    gin_config_files: tuple[str, ...]
    gin_bindings: tuple[str, ...] = ()
    data_dir: str = "tmp/"
    exp_dir: str = "exps/"
    ckpt_dir: str = "ckpts/"
    resume: str | None = None
    debug_anomaly: bool = False
    final_test: bool = True  # False in search trials: they never look at the test split


def load_config(options: RunOptions) -> TrainConfig:
    """Parse the gin files and bindings and build the validated :class:`TrainConfig`."""
    parse_gin(options.gin_config_files, options.gin_bindings)
    return train_fn()


def preflight(options: RunOptions) -> TrainConfig:
    """Checks made once in the launching process, before any worker starts."""
    config = load_config(options)
    store = SequenceStore.open(options.data_dir, config.dataset_name)
    validate(config, store)
    return config


def run_training(
    options: RunOptions, topology: Topology, on_full_evaluation: EvaluationCallback | None = None
) -> dict | None:
    """Validate, then start this node's workers; returns the final metrics when run in-process.

    ``on_full_evaluation`` (see :class:`Trainer`) needs a one-process job: it is a live callable,
    which cannot cross a process spawn.
    """
    preflight(options)
    if on_full_evaluation is None:
        return launch(train_worker, topology, options)
    if topology.world_size != 1:
        raise UserInputError("an evaluation callback needs a one-process run (world size 1)")
    return launch(partial(train_worker, on_full_evaluation=on_full_evaluation), topology, options)


def train_worker(
    context: DistributedContext,
    init_method: str,
    options: RunOptions,
    on_full_evaluation: EvaluationCallback | None = None,
) -> dict:
    """Everything one rank does: configure, build, (resume,) fit. Returns the final metrics.

    SIGTERM / SIGUSR1 are caught from the start, so a preemption never kills a rank that is
    still setting up; the trainer stops all ranks at the same step (training/preemption.py)."""
    with StopSignals() as stop_signals:
        prefix = f"[rank {context.rank}] " if context.world_size > 1 else ""
        configure_logging(logging.INFO if context.is_main else logging.WARNING, prefix=prefix)
        config = load_config(options)
        init_distributed(context, init_method)
        try:
            result = _train(config, context, options, on_full_evaluation, stop_signals)
            finish_distributed()
            return result
        finally:
            shutdown_distributed()


def _train(
    config: TrainConfig,
    context: DistributedContext,
    options: RunOptions,
    on_full_evaluation: EvaluationCallback | None = None,
    stop_signals: StopSignals | None = None,
) -> dict:
    tune_allocator()  # keep glibc from unmapping and re-faulting the step's large buffers
    set_cpu_threads(context)
    torch.autograd.set_detect_anomaly(options.debug_anomaly)
    torch.backends.cuda.matmul.allow_tf32 = config.enable_tf32
    torch.backends.cudnn.allow_tf32 = config.enable_tf32
    store = SequenceStore.open(options.data_dir, config.dataset_name)
    seed_everything(config.random_seed)
    built = build_training(config, store, context)
    group = f"{config.dataset_name}-l{config.max_sequence_length}"
    resume_path = _resume_path(options, group, built.run_prefix)
    resume_state = ckpt.load_checkpoint(resume_path) if resume_path else None
    if resume_state is not None:
        _check_same_configuration(resume_state, resume_path, built.run_prefix)
    run_name = (
        resume_state["run"]["run_name"]
        if resume_state
        else _shared_run_name(built.run_prefix, context)
    )
    run_dir = Path(options.exp_dir) / group / run_name
    logger = RunLogger(run_dir, active=context.is_main)
    checkpoint_dir = Path(options.ckpt_dir) / group / run_name
    record = _run_record(config, context, run_name, store)
    record["run_prefix"] = built.run_prefix
    record.update(data_dir=str(options.data_dir), checkpoint_dir=str(checkpoint_dir))
    trainer = Trainer(
        model=built.model,
        data=built.data,
        evaluate_fn=built.evaluate_fn,
        schedule=built.schedule,
        context=context,
        logger=logger,
        checkpoint_dir=checkpoint_dir,
        run_record=record,
        on_full_evaluation=on_full_evaluation,
        final_test=options.final_test,
        stop_requested=stop_signals or (lambda: None),
    )
    if resume_state is not None:
        trainer.load_state_dict(resume_state, resume_path)
        if context.is_main:
            _LOG.info(
                "resumed from %s at epoch %d, step %d (batch %d of the epoch)",
                resume_path, trainer.state.epoch, trainer.state.step, trainer.state.epoch_step,
            )  # fmt: skip
    logger.text_file("config.gin", record["gin_config"])
    logger.json_file("run.json", record)
    if context.is_main:
        _LOG.info("run folder %s (%s)", run_dir, built.model_summary)
    try:
        result = trainer.fit()
    finally:
        logger.close()
    result["run_dir"] = str(run_dir)
    return result


def _check_same_configuration(state: dict, path: Path, prefix: str) -> None:
    """Refuse to continue a checkpoint written under another configuration (when it says so)."""
    theirs = state.get("run", {}).get("run_prefix") if isinstance(state.get("run"), dict) else None
    if theirs is not None and theirs != prefix:
        raise UserInputError(
            f"--resume={path}: that run's configuration ({theirs}) differs from this one ({prefix})"
        )


def _shared_run_name(prefix: str, context: DistributedContext) -> str:
    """``<prefix>-<date>``, decided by rank 0 so every rank writes to the same folders."""
    names = [f"{prefix}-{datetime.datetime.now():%Y-%m-%d-%H%M%S}"]
    if is_distributed():
        dist.broadcast_object_list(names, src=0)
    return names[0]


def _resume_path(options: RunOptions, group: str, prefix: str) -> Path | None:
    if options.resume is None:
        return None
    if options.resume != "latest":
        path = Path(options.resume)
        return path / "last.pt" if path.is_dir() else path
    folder = Path(options.ckpt_dir) / group
    # Exactly "<prefix>-<date>": a run whose name merely starts with this prefix (another
    # configuration with one more part, e.g. "-valid") is never picked.
    own_run = re.compile(re.escape(prefix) + r"-\d{4}-\d{2}-\d{2}-\d{6}")
    candidates = sorted(
        (
            p / "last.pt"
            for p in folder.glob(f"{glob_escape(prefix)}-*")
            if own_run.fullmatch(p.name) and (p / "last.pt").is_file()
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        raise UserInputError(
            f"--resume=latest: no checkpoint of this configuration under {folder}/{prefix}-*/last.pt"
        )
    return candidates[-1]


def glob_escape(text: str) -> str:
    """``text`` with glob's special characters matched literally."""
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _run_record(
    config: TrainConfig, context: DistributedContext, run_name: str, store: SequenceStore
) -> dict:
    return {
        "run_name": run_name,
        "train_config": {k: str(v) for k, v in config.to_dict().items()},
        "gin_config": operative_config(),
        "seed": str(config.random_seed),
        "world_size": str(context.world_size),
        "device": str(context.device.type),
        "code_version": f"{__version__}+{_git_revision()}",
        "versions": f"python {platform.python_version()}, torch {torch.__version__}, "
        f"gin {gin.__version__ if hasattr(gin, '__version__') else 'unknown'}",
        "dataset_fingerprint": str(store.meta.get("target_fingerprint", "")),
    }


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def evaluate_checkpoint(options: RunOptions, checkpoint_path: Path, split: str = "test") -> dict:
    """Full evaluation of a checkpoint's model on ``split`` ("test" or "selection"), one process.

    ``options`` must give the configuration the checkpoint was trained with (its files and
    bindings); the weights are checked against it. Used to test a search's best trial once.
    """
    config = load_config(options)  # build_training below checks every binding
    context = DistributedContext(rank=0, local_rank=0, world_size=1, device=_default_device())
    store = SequenceStore.open(options.data_dir, config.dataset_name)
    seed_everything(config.random_seed)
    built = build_training(config, store, context)
    state = ckpt.load_checkpoint(checkpoint_path)
    ckpt.check_compatible(built.model.state_dict(), state["model"], checkpoint_path)
    built.model.load_state_dict(state["model"])
    data = built.data.test if split == "test" else built.data.selection
    if data is None:
        raise UserInputError(f"{checkpoint_path}: no {split} split under this protocol")
    encoder = built.model.encoder.eval()
    with torch.no_grad():
        return built.evaluate_fn(encoder, data, None)


def _default_device() -> torch.device:
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")

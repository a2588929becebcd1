"""The training loop: small methods composed by :meth:`Trainer.fit`, with a ``state_dict``.

The trainer receives everything already built (model, loaders, evaluator, retrieval factory); it
knows nothing of gin or of string choices.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.errors import UserInputError, check_choice, check_positive
from generative_recommenders.training import checkpoint as ckpt
from generative_recommenders.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    any_rank,
    barrier,
    broadcast_flag,
    gather_to_main,
)
from generative_recommenders.training.inputs import encoder_inputs
from generative_recommenders.training.model import AutoregressiveModel
from generative_recommenders.training.optim import make_optimizer, make_warmup_scheduler
from generative_recommenders.training.run_logging import RunLogger
from generative_recommenders.training.seeding import (
    epoch_seed,
    rng_state,
    seed_everything,
    set_rng_state,
)

_LOG = logging.getLogger(__name__)

CONSOLE_METRICS = ("ndcg@10", "ndcg@50", "hr@10", "hr@50", "mrr")


EVAL_SPLITS = ("test", "valid")
ON_NONFINITE_LOSS = ("stop", "skip")


@dataclass(frozen=True)
class Schedule:
    """When to evaluate, save and stop, and the optimiser's settings.

    The fields are the ``train_fn.<name>`` bindings of this section (the paper's names and
    defaults); a new loop setting is one field here, read as ``self.schedule.<name>``.
    """

    num_epochs: int = 101
    eval_interval: int = 100
    partial_eval_num_iters: int = 32
    full_eval_every_n: int = 1
    save_ckpt_every_n: int = 1000
    keep_last_n_checkpoints: int = 3
    eval_split: str = "test"  # "test": the paper's protocol; "valid": select on the validation item
    selection_metric: str = "ndcg@10"
    early_stopping_patience: int = 0  # full evaluations without improvement; 0 = never stop
    learning_rate: float = 1e-3
    weight_decay: float = 1e-3
    num_warmup_steps: int = 0
    random_seed: int = 42
    # Long runs (docs/training.md): steps count optimizer steps over the whole run; 0 = off.
    checkpoint_every_n_steps: int = 0
    eval_every_n_steps: int = 0
    max_steps: int = 0
    on_nonfinite_loss: str = "stop"  # or "skip"

    def __post_init__(self) -> None:
        check_choice("train_fn.eval_split", self.eval_split, EVAL_SPLITS)
        for name in ("num_epochs", "full_eval_every_n", "partial_eval_num_iters"):
            check_positive(f"train_fn.{name}", getattr(self, name))
        if self.early_stopping_patience < 0:
            raise ValueError("train_fn.early_stopping_patience: expected >= 0 (0 = never stop)")
        check_choice("train_fn.on_nonfinite_loss", self.on_nonfinite_loss, ON_NONFINITE_LOSS)
        for name in ("checkpoint_every_n_steps", "eval_every_n_steps", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"train_fn.{name}={value!r}: expected a step count >= 0 (0 = off)")


@dataclass
class SplitData:
    """A loader with the dataset behind it (the dataset supplies ``seen_items`` for filtering)."""

    loader: Iterable[SequenceBatch]
    dataset: object


@dataclass
class RunData:
    train: SplitData
    selection: SplitData  # evaluated during training: the test item, or the validation item
    test: SplitData | None  # the held-out test item when selection is the validation split
    set_epoch: Callable[[Iterable[SequenceBatch], int, int], None]  # (loader, epoch, start_batch)


@dataclass
class TrainingState:
    """What a checkpoint must carry beyond the weights to continue exactly."""

    epoch: int = 0  # the next epoch to run (or the one in progress when epoch_step > 0)
    step: int = 0
    epoch_step: int = 0  # batches of ``epoch`` already trained (a mid-epoch checkpoint)
    epoch_loss_sum: float = 0.0  # this rank's loss sum and count over those batches
    epoch_loss_count: int = 0
    skipped_steps: int = 0  # steps whose update was skipped for a non-finite loss
    best_metric: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class StepResult:
    """One step's losses (this rank's) and what every rank agreed on after it."""

    total: float
    main: float
    aux: dict[str, float]
    finite: bool  # False: some rank's loss was non-finite, and no update was made
    stop_signal: str | None  # a preemption signal some rank received


@dataclass(frozen=True)
class EpochEnd:
    mean_loss: float
    complete: bool  # False: stopped early (max_steps, a signal, a non-finite loss)
    stopped: dict | None = None  # why the run must end now (signal or non-finite loss)


class Trainer:
    """Trains ``model`` on ``data.train`` and evaluates it on full-catalogue retrieval.

    Args:
        model: the autoregressive composition (encoder, sampler, loss).
        data: loaders for training, selection and (valid protocol) test.
        evaluate_fn: ``(encoder, split, num_batches) -> metrics``; runs retrieval and metrics.
        schedule: the schedule bindings.
        context: rank, world size and device.
        logger: TensorBoard and JSON records (active on rank 0).
        checkpoint_dir: this run's checkpoint folder.
        run_record: static facts about the run, stored in every checkpoint (config, run name, ...).
        on_full_evaluation: called on rank 0 as ``(epoch, metrics, improved)`` after each full
            evaluation of the selection split, once that epoch's checkpoints are written (a
            hyperparameter search reports to its scheduler from here).
        final_test: evaluate the held-out test item at the end (validation protocol). A search
            turns it off: its trials must never look at the test split.
        stop_requested: returns the name of a preemption signal this process received, or None.
    """

    def __init__(
        self,
        model: AutoregressiveModel,
        data: RunData,
        evaluate_fn: Callable[[nn.Module, SplitData, int | None], dict[str, float]],
        schedule: Schedule,
        context: DistributedContext,
        logger: RunLogger,
        checkpoint_dir: Path,
        run_record: dict,
        on_full_evaluation: Callable[[int, dict[str, float], bool], None] | None = None,
        final_test: bool = True,
        stop_requested: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.model = model.to(context.device)
        self.data = data
        self.evaluate_fn = evaluate_fn
        self.schedule = schedule
        self.context = context
        self.logger = logger
        self.checkpoint_dir = checkpoint_dir
        self.run_record = run_record
        self.on_full_evaluation = on_full_evaluation
        self.final_test = final_test
        self.stop_requested = stop_requested
        self.state = TrainingState()
        self.last_checkpoint: Path | None = None
        self._resume_rng: dict | None = None  # this rank's generators at a mid-epoch checkpoint
        self.optimizer = make_optimizer(self.model, schedule.learning_rate, schedule.weight_decay)
        self.scheduler = make_warmup_scheduler(self.optimizer, schedule.num_warmup_steps)
        self.train_module: nn.Module = self.model
        if context.world_size > 1:
            device_ids = [context.device.index] if context.device.type == "cuda" else None
            self.train_module = DistributedDataParallel(self.model, device_ids=device_ids)

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: SequenceBatch) -> StepResult:
        """One optimisation step.

        Between backward and the update, every rank learns whether any rank's loss is non-finite
        or any rank received a preemption signal (one small all-reduce; the loss's ``item()``
        synchronises the device there anyway). A non-finite loss anywhere means no rank updates:
        under ``on_nonfinite_loss="stop"`` the step does not count, under ``"skip"`` it counts
        (data position and step number advance) without an update (nor a learning-rate schedule
        step: warmup follows the updates actually made).
        """
        batch = batch.to(self.context.device, non_blocking=True)
        inputs = encoder_inputs(batch, write_target_id=True)
        self.optimizer.zero_grad(set_to_none=True)
        total, main, aux = self.train_module(inputs)
        total.backward()
        total_value = float(total.item())
        signal_name = self.stop_requested()
        nonfinite, stop = any_rank(
            [not math.isfinite(total_value), signal_name is not None], self.context.device
        )
        result = StepResult(
            total=total_value,
            main=float(main.item()),
            aux={k: float(v) for k, v in aux.items()},
            finite=not nonfinite,
            stop_signal=(signal_name or "a preemption signal on another rank") if stop else None,
        )
        if nonfinite:
            self.optimizer.zero_grad(set_to_none=True)
            if self.schedule.on_nonfinite_loss == "stop":
                return result
            self.state.skipped_steps += 1
        else:
            self.optimizer.step()
            self.scheduler.step()
        self.state.step += 1
        return result

    def evaluate(self, split: SplitData, num_batches: int | None) -> dict[str, float]:
        """Full (``num_batches=None``) or partial evaluation; the same metrics on every rank.

        The random generators are restored afterwards, so evaluating (or not, or more often)
        never changes what training draws next."""
        was_training = self.encoder.training
        generators = rng_state()
        self.encoder.eval()
        try:
            with torch.no_grad():
                return self.evaluate_fn(self.encoder, split, num_batches)
        finally:
            self.encoder.train(was_training)
            set_rng_state(generators)

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> EpochEnd:
        """Run (the rest of) one epoch; its mean training loss is over all ranks.

        A fresh epoch reseeds every generator from (seed, epoch, rank); one resumed mid-epoch
        skips the batches already trained at the sampler and restores the generators as they
        were after them, so it draws exactly what the uninterrupted run drew."""
        s = self.state
        if self._resume_rng is None:
            seed_everything(epoch_seed(self.schedule.random_seed, epoch, self.context.rank))
        loader = self.data.train.loader
        self.data.set_epoch(loader, epoch, s.epoch_step)
        epoch_batches = s.epoch_step + len(loader)
        if self._resume_rng is not None:
            set_rng_state(self._resume_rng)
            self._resume_rng = None
        self.model.train()
        show_bar = self.context.is_main and getattr(sys.stderr, "isatty", lambda: False)()
        progress = tqdm(loader, desc=f"epoch {epoch}", disable=not show_bar, leave=False)
        sequences, started, stopped = 0, time.perf_counter(), None
        for batch in progress:
            step_started = time.perf_counter()
            result = self.train_step(batch)
            step_seconds = time.perf_counter() - step_started
            if not result.finite and self.schedule.on_nonfinite_loss == "stop":
                stopped = self._nonfinite_stop(result.total)
                break
            s.epoch_step += 1
            if result.finite:
                s.epoch_loss_sum += result.total
                s.epoch_loss_count += 1
            else:
                self._note_skipped(result.total)
            sequences += batch.batch_size * self.context.world_size
            rate = batch.batch_size * self.context.world_size / max(step_seconds, 1e-9)
            progress.set_postfix(loss=f"{result.total:.4f}", seq_per_s=f"{rate:.0f}")
            self._log_step(result.total, result.main, result.aux, rate, step_seconds)
            self._step_evaluations()
            every = self.schedule.checkpoint_every_n_steps
            if result.stop_signal is not None or (every > 0 and s.step % every == 0):
                self._checkpoint(f"step{s.step}.pt")
            if result.stop_signal is not None:
                stopped = {"reason": "preempted", "signal": result.stop_signal, "step": s.step}
                stopped["checkpoint"] = str(self.last_checkpoint)
                break
            if self._max_steps_reached():
                break
        totals = all_reduce_sum(
            torch.tensor([s.epoch_loss_sum, float(s.epoch_loss_count)], dtype=torch.float64)
        )
        # nan when no step of the epoch had a finite loss (every update skipped)
        mean_loss = float(totals[0] / totals[1]) if totals[1].item() > 0 else math.nan
        if stopped is not None:
            return EpochEnd(mean_loss, complete=False, stopped=stopped)
        elapsed = time.perf_counter() - started
        self.logger.scalar("loss/train", mean_loss, epoch)
        if self.context.is_main:
            _LOG.info(
                "epoch %d: loss %.4f, %d sequences in %.1fs (%.0f sequences/s)",
                epoch, mean_loss, sequences, elapsed, sequences / max(elapsed, 1e-9),
            )  # fmt: skip
        return EpochEnd(mean_loss, complete=s.epoch_step >= epoch_batches)

    def end_of_epoch_evaluation(self, epoch: int) -> dict[str, float] | None:
        """Partial or full evaluation of the selection split; returns metrics when full.

        The last evaluation of the run (last epoch, or ``max_steps`` reached) is always full."""
        last_epoch = epoch == self.schedule.num_epochs - 1 or self._max_steps_reached()
        full = (epoch + 1) % self.schedule.full_eval_every_n == 0 or last_epoch
        metrics = self.evaluate(
            self.data.selection, None if full else self.schedule.partial_eval_num_iters
        )
        tag = "eval_epoch_full" if full else "eval_epoch"
        self.logger.scalars(tag, metrics, epoch)
        self._console(f"epoch {epoch} {'full' if full else 'partial'} eval", metrics)
        return metrics if full else None

    def fit(self) -> dict:
        """Train from ``state.epoch`` to the end (or early stop, or ``max_steps``); returns the
        final metrics, or ``{"stopped": {...}}`` when a signal or a non-finite loss ended it."""
        schedule = self.schedule
        last_full: dict[str, float] | None = None
        for epoch in range(self.state.epoch, schedule.num_epochs):
            if self._max_steps_reached():
                break
            end = self.train_epoch(epoch)
            if end.stopped is not None:
                self.logger.flush()
                return {"stopped": end.stopped}
            full_metrics = self.end_of_epoch_evaluation(epoch)
            lr = self.scheduler.get_last_lr()[0]
            self.state.history.append(
                {"epoch": epoch, "step": self.state.step, "loss": end.mean_loss, "lr": lr}
                | (full_metrics or {})
            )
            improved = False
            if full_metrics is not None:
                last_full = full_metrics
                improved = self._update_best(epoch, full_metrics)
                self._plot_curves()
            if end.complete:
                self.state = dataclasses.replace(
                    self.state, epoch=epoch + 1, epoch_step=0, epoch_loss_sum=0.0,
                    epoch_loss_count=0,
                )  # fmt: skip
            self._save(epoch, improved, end.complete)
            if full_metrics is not None and self.on_full_evaluation and self.context.is_main:
                self.on_full_evaluation(epoch, full_metrics, improved)
            if self._max_steps_reached():
                if self.context.is_main:
                    _LOG.info("stopping at train_fn.max_steps=%d", schedule.max_steps)
                break
            if self._should_stop():
                if self.context.is_main:
                    _LOG.info(
                        "early stopping after epoch %d: no %s improvement in %d full evaluations",
                        epoch, schedule.selection_metric, schedule.early_stopping_patience,
                    )  # fmt: skip
                break
        return self._final_metrics(last_full)

    # ------------------------------------------------------------------ helpers
    def _update_best(self, epoch: int, metrics: dict[str, float]) -> bool:
        name = self.schedule.selection_metric
        if name not in metrics:
            raise UserInputError(
                f"train_fn.selection_metric={name!r} is not a computed metric; "
                f"choose one of: {', '.join(sorted(metrics))}"
            )
        if metrics[name] > self.state.best_metric:
            self.state.best_metric = metrics[name]
            self.state.best_epoch = epoch
            self.state.epochs_without_improvement = 0
            return True
        self.state.epochs_without_improvement += 1
        return False

    def _max_steps_reached(self) -> bool:
        return 0 < self.schedule.max_steps <= self.state.step

    def _step_evaluations(self) -> None:
        """A full evaluation every ``eval_every_n_steps``, else a partial one every
        ``eval_interval`` steps."""
        step, schedule = self.state.step, self.schedule
        if schedule.eval_every_n_steps > 0 and step % schedule.eval_every_n_steps == 0:
            metrics = self.evaluate(self.data.selection, None)
            self.logger.scalars("eval_step_full", metrics, step)
            self._console(f"step {step} full eval", metrics)
        elif schedule.eval_interval > 0 and step % schedule.eval_interval == 0:
            metrics = self.evaluate(self.data.selection, schedule.partial_eval_num_iters)
            self.logger.scalars("eval", metrics, step)
            self._console(f"step {step} partial eval", metrics)

    def _nonfinite_stop(self, loss: float) -> dict:
        step = self.state.step + 1  # the number this step would have been logged under
        checkpoint = str(self.last_checkpoint) if self.last_checkpoint else None
        return {"reason": "nonfinite", "step": step, "loss": loss, "checkpoint": checkpoint}

    def _note_skipped(self, loss: float) -> None:
        self.logger.scalar("train/skipped_steps", self.state.skipped_steps, self.state.step)
        if self.context.is_main:
            _LOG.warning(
                "step %d: non-finite loss (%s on this rank); update skipped "
                "(train_fn.on_nonfinite_loss=\"skip\", %d skipped so far)",
                self.state.step, loss, self.state.skipped_steps,
            )  # fmt: skip

    def _should_stop(self) -> bool:
        patience = self.schedule.early_stopping_patience
        stop = patience > 0 and self.state.epochs_without_improvement >= patience
        return broadcast_flag(stop, self.context.device)

    def _final_metrics(self, last_full: dict[str, float] | None) -> dict:
        if self.schedule.eval_split == "test":
            if last_full is None:  # resumed after the last epoch, or stopped before any full eval
                last_full = self.evaluate(self.data.selection, None)
            epoch = self.state.history[-1]["epoch"] if self.state.history else self.state.epoch - 1
            result = {"protocol": "test", "epoch": epoch, "test": last_full}
        elif not self.final_test:
            result = {
                "protocol": "valid",
                "best_epoch": self.state.best_epoch,
                "selection_metric": self.schedule.selection_metric,
                "valid": self._best_validation_metrics(),
                "steps": self.state.step,
                "skipped_steps": self.state.skipped_steps,
            }
            self.logger.json_file("metrics.json", result)
            self._plot_curves()
            self.logger.flush()
            return result
        else:
            best_path = self.checkpoint_dir / "best.pt"
            barrier()  # rank 0 has written best.pt
            if best_path.is_file():
                self.model.load_state_dict(ckpt.load_checkpoint(best_path)["model"])
            assert self.data.test is not None
            test_metrics = self.evaluate(self.data.test, None)
            result = {
                "protocol": "valid",
                "best_epoch": self.state.best_epoch,
                "selection_metric": self.schedule.selection_metric,
                "valid": self._best_validation_metrics(),
                "test": test_metrics,
            }
            self._console(f"test (best epoch {self.state.best_epoch})", test_metrics)
        result.update(steps=self.state.step, skipped_steps=self.state.skipped_steps)
        self.logger.scalars("final_test", result["test"], self.state.epoch)
        self.logger.json_file("metrics.json", result)
        self._plot_curves(result["test"] if result["protocol"] == "valid" else None)
        self.logger.flush()
        return result

    def _best_validation_metrics(self) -> dict[str, float]:
        # An epoch cut short by max_steps and finished after a resume has two history entries.
        name, best_value = self.schedule.selection_metric, self.state.best_metric
        best = next(
            (
                h
                for h in reversed(self.state.history)
                if h["epoch"] == self.state.best_epoch and h.get(name) == best_value
            ),
            {},
        )
        return {k: v for k, v in best.items() if k not in ("epoch", "step", "loss", "lr")}

    def _log_step(
        self, total: float, main: float, aux: dict[str, float], rate: float, seconds: float
    ) -> None:
        step = self.state.step
        self.logger.scalar("losses/ar_loss", total, step)
        self.logger.scalar("losses/main_loss", main, step)
        for name, value in aux.items():
            self.logger.scalar(f"losses/{name}", value, step)
        self.logger.scalar("lr", self.scheduler.get_last_lr()[0], step)
        self.logger.scalar("throughput/sequences_per_s", rate, step)
        self.logger.scalar("throughput/step_ms", seconds * 1000.0, step)

    def _plot_curves(self, final_test: dict[str, float] | None = None) -> None:
        """curves.png from the history (rank 0; failures are warnings, see RunLogger.curves)."""
        self.logger.curves(
            self.state.history, self.state.best_epoch, self.schedule.eval_split, final_test
        )

    def _console(self, what: str, metrics: dict[str, float]) -> None:
        if self.context.is_main:
            shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in CONSOLE_METRICS if k in metrics)
            _LOG.info("%s: %s", what, shown)

    def _save(self, epoch: int, improved: bool, complete: bool) -> None:
        """After an epoch (or the part of one that ``max_steps`` allowed): ``last.pt``, ``best.pt``
        when it improved, ``ep<N>.pt`` on schedule (``step<N>.pt`` for a partial epoch)."""
        last_epoch = epoch == self.schedule.num_epochs - 1
        name = None
        if not complete:
            name = f"step{self.state.step}.pt"
        elif (epoch + 1) % self.schedule.save_ckpt_every_n == 0 or last_epoch:
            name = f"ep{epoch}.pt"
        self._checkpoint(name, best=improved and self.schedule.eval_split == "valid")

    def _checkpoint(self, name: str | None, best: bool = False) -> None:
        """Write the state as ``name`` with ``last.pt`` (and ``best.pt``) pointing to it, or as
        ``last.pt`` alone. Every rank must call it: each rank's generators are gathered."""
        rank_states = gather_to_main(self._rank_state())
        last = self.checkpoint_dir / "last.pt"
        path = self.checkpoint_dir / name if name else last
        if self.context.is_main:
            aliases = (last,) if name else ()
            aliases += (self.checkpoint_dir / "best.pt",) if best else ()
            ckpt.save_checkpoint(self.state_dict(rank_states), path, aliases)
            ckpt.prune_checkpoints(self.checkpoint_dir, self.schedule.keep_last_n_checkpoints)
        self.last_checkpoint = path

    # ------------------------------------------------------------------ state
    def _rank_state(self) -> dict:
        """What differs between ranks: the generators and the epoch's loss sums so far."""
        s = self.state
        return {"rng": rng_state(), "loss_sum": s.epoch_loss_sum, "loss_count": s.epoch_loss_count}

    def state_dict(self, rank_states: list[dict] | None = None) -> dict:
        """Everything a resume needs; ``rank_states`` is every rank's :meth:`_rank_state`, in
        rank order (this rank's alone when omitted)."""
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": s.epoch,
            "step": s.step,
            "sampler_epoch": s.epoch,
            "epoch_step": s.epoch_step,
            "skipped_steps": s.skipped_steps,
            "world_size": self.context.world_size,
            "best_metric": s.best_metric,
            "best_epoch": s.best_epoch,
            "epochs_without_improvement": s.epochs_without_improvement,
            "history": s.history,
            "rng": rng_state(),
            "ranks": rank_states if rank_states is not None else [self._rank_state()],
            "run": self.run_record,
        }

    def load_state_dict(self, state: dict, source: Path) -> None:
        """Continue from a checkpoint; refuses one of another model configuration, and a
        mid-epoch one written by another number of workers (its data shards would differ)."""
        ckpt.check_compatible(self.model.state_dict(), state["model"], source)
        epoch_step = int(state.get("epoch_step", 0))
        written_by = int(state.get("world_size", 1))
        if epoch_step and written_by != self.context.world_size:
            raise UserInputError(
                f"{source}: written in the middle of epoch {int(state['epoch'])} by {written_by} "
                f"workers; resume it with {written_by} workers (--nnodes x --nproc_per_node), "
                "or from an epoch checkpoint (ep<N>.pt)"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        mine = state["ranks"][self.context.rank] if epoch_step else {}
        self.state = TrainingState(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            epoch_step=epoch_step,
            epoch_loss_sum=float(mine.get("loss_sum", 0.0)),
            epoch_loss_count=int(mine.get("loss_count", 0)),
            skipped_steps=int(state.get("skipped_steps", 0)),
            best_metric=float(state["best_metric"]),
            best_epoch=int(state["best_epoch"]),
            epochs_without_improvement=int(state["epochs_without_improvement"]),
            history=list(state["history"]),
        )
        set_rng_state(state["rng"])
        self._resume_rng = mine["rng"] if epoch_step else None
        self.last_checkpoint = source

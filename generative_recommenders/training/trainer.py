"""The training loop: small methods composed by :meth:`Trainer.fit`, with a ``state_dict``.

The trainer receives everything already built (model, loaders, evaluator, retrieval factory); it
knows nothing of gin or of string choices.
"""

from __future__ import annotations

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
    barrier,
    broadcast_flag,
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

    def __post_init__(self) -> None:
        check_choice("train_fn.eval_split", self.eval_split, EVAL_SPLITS)
        for name in ("num_epochs", "full_eval_every_n", "partial_eval_num_iters"):
            check_positive(f"train_fn.{name}", getattr(self, name))
        if self.early_stopping_patience < 0:
            raise ValueError("train_fn.early_stopping_patience: expected >= 0 (0 = never stop)")


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
    set_epoch: Callable[[Iterable[SequenceBatch], int], None]


@dataclass
class TrainingState:
    """What a checkpoint must carry beyond the weights to continue exactly."""

    epoch: int = 0  # the next epoch to run
    step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list[dict] = field(default_factory=list)


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
        self.state = TrainingState()
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
    def train_step(self, batch: SequenceBatch) -> tuple[float, float, dict[str, float]]:
        """One optimisation step; returns (total loss, main loss, auxiliary losses)."""
        batch = batch.to(self.context.device, non_blocking=True)
        inputs = encoder_inputs(batch, write_target_id=True)
        self.optimizer.zero_grad(set_to_none=True)
        total, main, aux = self.train_module(inputs)
        total.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        return float(total.item()), float(main.item()), {k: float(v) for k, v in aux.items()}

    def evaluate(self, split: SplitData, num_batches: int | None) -> dict[str, float]:
        """Full (``num_batches=None``) or partial evaluation; the same metrics on every rank."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                return self.evaluate_fn(self.encoder, split, num_batches)
        finally:
            self.encoder.train(was_training)

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> float:
        """Run one epoch; returns its mean training loss over all ranks."""
        seed_everything(epoch_seed(self.schedule.random_seed, epoch, self.context.rank))
        self.data.set_epoch(self.data.train.loader, epoch)
        self.model.train()
        show_bar = self.context.is_main and getattr(sys.stderr, "isatty", lambda: False)()
        progress = tqdm(
            self.data.train.loader, desc=f"epoch {epoch}", disable=not show_bar, leave=False
        )
        loss_sum, loss_count, sequences, started = 0.0, 0, 0, time.perf_counter()
        for batch in progress:
            step_started = time.perf_counter()
            total, main, aux = self.train_step(batch)
            step_seconds = time.perf_counter() - step_started
            loss_sum += total
            loss_count += 1
            sequences += batch.batch_size * self.context.world_size
            rate = batch.batch_size * self.context.world_size / max(step_seconds, 1e-9)
            progress.set_postfix(loss=f"{total:.4f}", seq_per_s=f"{rate:.0f}")
            self._log_step(total, main, aux, rate, step_seconds)
            if (
                self.schedule.eval_interval > 0
                and self.state.step % self.schedule.eval_interval == 0
            ):
                metrics = self.evaluate(self.data.selection, self.schedule.partial_eval_num_iters)
                self.logger.scalars("eval", metrics, self.state.step)
                self._console(f"step {self.state.step} partial eval", metrics)
        totals = all_reduce_sum(torch.tensor([loss_sum, float(loss_count)], dtype=torch.float64))
        mean_loss = float(totals[0] / max(totals[1].item(), 1.0))
        elapsed = time.perf_counter() - started
        self.logger.scalar("loss/train", mean_loss, epoch)
        if self.context.is_main:
            _LOG.info(
                "epoch %d: loss %.4f, %d sequences in %.1fs (%.0f sequences/s)",
                epoch, mean_loss, sequences, elapsed, sequences / max(elapsed, 1e-9),
            )  # fmt: skip
        return mean_loss

    def end_of_epoch_evaluation(self, epoch: int) -> dict[str, float] | None:
        """Partial or full evaluation of the selection split; returns metrics when full."""
        last_epoch = epoch == self.schedule.num_epochs - 1
        full = (epoch + 1) % self.schedule.full_eval_every_n == 0 or last_epoch
        metrics = self.evaluate(
            self.data.selection, None if full else self.schedule.partial_eval_num_iters
        )
        tag = "eval_epoch_full" if full else "eval_epoch"
        self.logger.scalars(tag, metrics, epoch)
        self._console(f"epoch {epoch} {'full' if full else 'partial'} eval", metrics)
        return metrics if full else None

    def fit(self) -> dict:
        """Train from ``state.epoch`` to the end (or early stop); returns the final metrics."""
        schedule = self.schedule
        last_full: dict[str, float] | None = None
        for epoch in range(self.state.epoch, schedule.num_epochs):
            mean_loss = self.train_epoch(epoch)
            full_metrics = self.end_of_epoch_evaluation(epoch)
            lr = self.scheduler.get_last_lr()[0]
            self.state.history.append(
                {"epoch": epoch, "loss": mean_loss, "lr": lr, **(full_metrics or {})}
            )
            improved = False
            if full_metrics is not None:
                last_full = full_metrics
                improved = self._update_best(epoch, full_metrics)
                self._plot_curves()
            self.state.epoch = epoch + 1
            self._save(epoch, improved)
            if full_metrics is not None and self.on_full_evaluation and self.context.is_main:
                self.on_full_evaluation(epoch, full_metrics, improved)
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

    def _should_stop(self) -> bool:
        patience = self.schedule.early_stopping_patience
        stop = patience > 0 and self.state.epochs_without_improvement >= patience
        return broadcast_flag(stop, self.context.device)

    def _final_metrics(self, last_full: dict[str, float] | None) -> dict:
        if self.schedule.eval_split == "test":
            if last_full is None:  # resumed after the last epoch, or stopped before any full eval
                last_full = self.evaluate(self.data.selection, None)
            result = {"protocol": "test", "epoch": self.state.epoch - 1, "test": last_full}
        elif not self.final_test:
            result = {
                "protocol": "valid",
                "best_epoch": self.state.best_epoch,
                "selection_metric": self.schedule.selection_metric,
                "valid": self._best_validation_metrics(),
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
        self.logger.scalars("final_test", result["test"], self.state.epoch)
        self.logger.json_file("metrics.json", result)
        self._plot_curves(result["test"] if result["protocol"] == "valid" else None)
        self.logger.flush()
        return result

    def _best_validation_metrics(self) -> dict[str, float]:
        best = next((h for h in self.state.history if h["epoch"] == self.state.best_epoch), {})
        return {k: v for k, v in best.items() if k not in ("epoch", "loss", "lr")}

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

    def _save(self, epoch: int, improved: bool) -> None:
        if not self.context.is_main:
            return
        state = self.state_dict()
        ckpt.save_checkpoint(state, self.checkpoint_dir / "last.pt")
        if improved and self.schedule.eval_split == "valid":
            ckpt.save_checkpoint(state, self.checkpoint_dir / "best.pt")
        last_epoch = epoch == self.schedule.num_epochs - 1
        if (epoch + 1) % self.schedule.save_ckpt_every_n == 0 or last_epoch:
            ckpt.save_checkpoint(state, self.checkpoint_dir / f"ep{epoch}.pt")
            ckpt.prune_checkpoints(self.checkpoint_dir, self.schedule.keep_last_n_checkpoints)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": s.epoch,
            "step": s.step,
            "sampler_epoch": s.epoch,
            "best_metric": s.best_metric,
            "best_epoch": s.best_epoch,
            "epochs_without_improvement": s.epochs_without_improvement,
            "history": s.history,
            "rng": rng_state(),
            "run": self.run_record,
        }

    def load_state_dict(self, state: dict, source: Path) -> None:
        """Continue from a checkpoint; refuses one of another model configuration."""
        ckpt.check_compatible(self.model.state_dict(), state["model"], source)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.state = TrainingState(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            best_metric=float(state["best_metric"]),
            best_epoch=int(state["best_epoch"]),
            epochs_without_improvement=int(state["epochs_without_improvement"]),
            history=list(state["history"]),
        )
        set_rng_state(state["rng"])

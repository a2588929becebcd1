"""``curves.png``: a run's training loss, full-evaluation metrics and learning rate per epoch.

Drawn from ``TrainingState.history`` (one record per epoch: ``epoch``, ``loss``, ``lr`` and, after
a full evaluation, the metrics), with matplotlib's Agg renderer on a bare ``Figure`` (no pyplot,
no display, no global state shared between runs). Three panels: training loss; HR@10, NDCG@10
and MRR of the split evaluated during training (validation or test, by the protocol) with the
final test of the best checkpoint as markers under the validation protocol; learning rate. The
best epoch is a dashed vertical line in every panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from generative_recommenders.atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CURVES_FILE = "curves.png"
METRICS = ("hr@10", "ndcg@10", "mrr")
_DPI = 80  # ~1000 x 290 pixels: small enough to commit and to open over a slow link


def _series(history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the records that have ``key``; values must be real numbers."""
    points = [(int(h["epoch"]), h[key]) for h in history if key in h]
    for epoch, value in points:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"history epoch {epoch}: {key} is {value!r}, expected a number")
    return [e for e, _ in points], [float(v) for _, v in points]


def build_figure(
    history: Sequence[dict],
    best_epoch: int,
    eval_split: str,
    final_test: dict[str, float] | None = None,
) -> Figure:
    """The three-panel figure.

    Args:
        history: per-epoch records (see the module docstring), oldest first.
        best_epoch: the epoch with the best selection metric, or < 0 when none yet.
        eval_split: "valid" or "test", the split evaluated during training.
        final_test: the test metrics of the best checkpoint (validation protocol), if known.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.5, 3.6), dpi=_DPI)
    # Fixed margins: a layout engine (constrained or tight) doubles the drawing time, which is
    # paid after every full evaluation.
    fig.subplots_adjust(left=0.045, right=0.99, bottom=0.14, top=0.91, wspace=0.2)
    loss_ax, metric_ax, lr_ax = fig.subplots(1, 3)
    epochs, losses = _series(history, "loss")
    loss_ax.plot(epochs, losses, marker=".", color="tab:blue", label="train loss")
    loss_ax.set_title("training loss (mean per epoch)")

    colors = dict(zip(METRICS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    for metric in METRICS:
        x, y = _series(history, metric)
        if x:
            metric_ax.plot(x, y, marker=".", color=colors[metric], label=f"{eval_split} {metric}")
        if final_test is not None and metric in final_test and best_epoch >= 0:
            metric_ax.plot(
                [best_epoch], [float(final_test[metric])], marker="*", markersize=12,
                linestyle="none", color=colors[metric], label=f"test {metric} (best ckpt)",
            )  # fmt: skip
    metric_ax.set_title(f"full evaluation ({eval_split})")

    x, y = _series(history, "lr")
    lr_ax.plot(x, y, marker=".", color="tab:purple", label="learning rate")
    lr_ax.set_title("learning rate (end of epoch)")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))

    for ax in (loss_ax, metric_ax, lr_ax):
        if best_epoch >= 0:
            ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1, label="best epoch")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(
                fontsize="x-small",
                ncols=2 if ax is metric_ax else 1,
                loc="lower right" if ax is metric_ax else "upper right",
            )
    return fig


def write_curves(
    path: Path,
    history: Sequence[dict],
    best_epoch: int,
    eval_split: str,
    final_test: dict[str, float] | None = None,
) -> None:
    """Render :func:`build_figure` to ``path`` as PNG, through a temporary name and a rename."""
    fig = build_figure(history, best_epoch, eval_split, final_test)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))

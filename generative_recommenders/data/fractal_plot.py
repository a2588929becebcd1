"""The PNG that compares a fractal expansion with its source: the properties the paper says
are preserved (user and item degree distributions, the shape of the singular-value spectrum)."""

from __future__ import annotations

import pathlib

import matplotlib
import numpy as np

from generative_recommenders.data.fractal import log_binned_degrees

matplotlib.use("Agg")  # files only: no display on servers and in tests
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def plot_comparison(
    path: pathlib.Path,
    *,
    source_name: str,
    expanded_name: str,
    source_user_degrees: np.ndarray,
    source_item_degrees: np.ndarray,
    expanded_user_degrees: np.ndarray,
    expanded_item_degrees: np.ndarray,
    source_spectrum: np.ndarray,
    expanded_spectrum: np.ndarray,
    expanded_spectrum_label: str,
) -> None:
    """Write three log-log panels: user degrees, item degrees, normalized singular values."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, title, src, exp in (
        (axes[0], "user degree (events per user)", source_user_degrees, expanded_user_degrees),
        (axes[1], "item degree (events per item)", source_item_degrees, expanded_item_degrees),
    ):
        for degrees, label, marker in ((src, source_name, "o"), (exp, expanded_name, "x")):
            x, y = log_binned_degrees(degrees)
            ax.loglog(x, y, marker, markersize=3, alpha=0.6, label=label)
        ax.set_xlabel("degree")
        ax.set_ylabel("fraction of rows")
        ax.set_title(title)
        ax.legend()
    ax = axes[2]
    for values, label, marker in (
        (source_spectrum, f"{source_name}", "o-"),
        (expanded_spectrum, f"{expanded_name} ({expanded_spectrum_label})", "x-"),
    ):
        if values.size and values[0] > 0:
            ax.loglog(np.arange(1, values.size + 1), values / values[0], marker, label=label)
    ax.set_xlabel("rank")
    ax.set_ylabel("singular value / largest")
    ax.set_title("singular-value spectrum (normalized)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

"""``--dataset fractal`` / ``--dataset ml-3b``: expand an existing store into a new one.

Validates everything (source store, multipliers, rates, free disk) before writing a byte, then
streams the expansion into a temporary folder that is renamed into place with its
``fractal.png`` (source vs expansion) and ``fractal_probabilities.npy`` (the reduced matrix).
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

import numpy as np

from generative_recommenders.data.fractal import (
    FractalSettings,
    check_disk,
    describe,
    expected_spectrum,
    plan_expansion,
    spectrum_of_store,
    write_expansion,
)
from generative_recommenders.data.sources.custom import check_store_name
from generative_recommenders.data.store import SequenceStore, open_store_writer, store_path
from generative_recommenders.errors import UserInputError

# ml-3b as the paper's public code makes it: ML-20M expanded 16 x 32.
ML_3B = {"source": "ml-20m", "num_row_multiplier": 16, "num_col_multiplier": 32}
# The expansion's spectrum is measured (a randomized SVD over the written store, ~100 bytes
# per interaction) up to this many interactions; above it the plot shows the expected spectrum
# σ(R̂) ⊗ σ(P), so the memory of a large expansion stays independent of its size.
SPECTRUM_MEASURE_LIMIT = 2_000_000
SPECTRUM_RANK = 64


@dataclass
class FractalSummary:
    """What an expansion produced (printed by preprocess_public_data.py)."""

    name: str
    source: str
    path: pathlib.Path
    settings: FractalSettings
    num_users: int
    num_items: int
    num_interactions: int
    expected_interactions: float
    source_interactions: int
    length_mean: float
    length_max: int
    bytes_on_disk: int
    seconds_plan: float
    seconds_expand: float
    seconds_total: float
    plot: pathlib.Path

    @property
    def interactions_per_second(self) -> float:
        return self.num_interactions / max(self.seconds_expand, 1e-9)

    def lines(self) -> list[str]:
        s = self.settings
        return [
            f"dataset            {self.name} (fractal expansion of {self.source}, "
            f"{s.num_row_multiplier} x {s.num_col_multiplier}, element rate "
            f"{s.element_sample_rate:g}, block rate {s.block_sample_rate:g}, seed {s.seed})",
            f"users              {self.num_users:,}",
            f"items              {self.num_items:,}",
            f"interactions       {self.num_interactions:,} (expected "
            f"{self.expected_interactions:,.0f}; {self.num_interactions / self.source_interactions:.2f}"
            f" x the source's {self.source_interactions:,})",
            f"sequence length    {self.length_mean:.2f} / {self.length_max:,} (mean / max)",
            f"density            {self.num_interactions / max(1, self.num_users * self.num_items):.3g}",
            f"on disk            {self.bytes_on_disk / 1e6:,.1f} MB "
            f"({self.bytes_on_disk / max(1, self.num_interactions):.1f} bytes per interaction)",
            f"speed              {self.interactions_per_second:,.0f} interactions/s written "
            f"({self.seconds_expand:.1f} s; SVD and reduced matrix {self.seconds_plan:.1f} s)",
            f"plot               {self.plot}",
            f"output             {self.path}/",
            f"time               {self.seconds_total:.1f} s",
        ]


def expand_store(
    source: str,
    name: str,
    settings: FractalSettings,
    data_dir: str | pathlib.Path,
    *,
    source_hint: str = "",
) -> FractalSummary:
    """Expand the store ``source`` under ``data_dir`` into a new store ``name``."""
    start = time.perf_counter()
    data_dir = pathlib.Path(data_dir)
    settings.validate()
    check_store_name(name)
    if name == source:
        raise UserInputError(f"--name={name!r}: expected a name other than the source store's")
    try:
        store = SequenceStore.open(data_dir, source)
    except UserInputError as e:
        raise UserInputError(f"{source_hint or '--source=' + source}: {e}") from None
    plan = plan_expansion(store, settings)
    check_disk(plan, data_dir)
    seconds_plan = time.perf_counter() - start
    out = store_path(data_dir, name)
    with open_store_writer(out, plan.num_item_ids) as writer:
        seconds_expand = write_expansion(plan, store, writer)
        if writer.num_interactions == 0:
            raise UserInputError(
                f"{name}: the expansion drew no interactions; raise --element_sample_rate or "
                "--block_sample_rate"
            )
        meta = writer.finish(
            {
                "dataset": name,
                "semantics": f"fractal expansion of the {source} store",
                "source_files": {},
                "has_ratings": store.has_ratings,
                "fractal": describe(plan),
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
        )
        np.save(writer.folder / "fractal_probabilities.npy", plan.probabilities)
        expanded = SequenceStore.open(writer.folder.parent, writer.folder.name)
        _plot(writer.folder / "fractal.png", store, expanded, name, plan, settings.seed)
        bytes_on_disk = sum(f.stat().st_size for f in writer.folder.iterdir())
    return FractalSummary(
        name=name,
        source=source,
        path=out,
        settings=settings,
        num_users=meta["num_users"],
        num_items=meta["num_items"],
        num_interactions=meta["num_interactions"],
        expected_interactions=plan.expected_interactions,
        source_interactions=store.num_interactions,
        length_mean=meta["sequence_length"]["mean"],
        length_max=meta["sequence_length"]["max"],
        bytes_on_disk=bytes_on_disk,
        seconds_plan=seconds_plan,
        seconds_expand=seconds_expand,
        seconds_total=time.perf_counter() - start,
        plot=out / "fractal.png",
    )


def _plot(path, store: SequenceStore, expanded: SequenceStore, name: str, plan, seed: int) -> None:
    # Imported here: matplotlib costs every other preprocessing run half a second otherwise.
    from generative_recommenders.data.fractal_plot import plot_comparison

    source_spectrum = spectrum_of_store(store, SPECTRUM_RANK, seed)
    if expanded.num_interactions <= SPECTRUM_MEASURE_LIMIT:
        spectrum, label = spectrum_of_store(expanded, SPECTRUM_RANK, seed), "measured"
    else:
        spectrum = expected_spectrum(plan, source_spectrum, SPECTRUM_RANK)
        label = "expected, Kronecker"
    plot_comparison(
        path,
        source_name=store.name,
        expanded_name=name,
        source_user_degrees=store.lengths(),
        source_item_degrees=store.item_counts(),
        expanded_user_degrees=expanded.lengths(),
        expanded_item_degrees=expanded.item_counts(),
        source_spectrum=source_spectrum,
        expanded_spectrum=spectrum,
        expanded_spectrum_label=label,
    )

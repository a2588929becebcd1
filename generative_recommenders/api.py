"""Training from Python: ``generative_recommenders.train(...)`` -> a :class:`TrainedRun`.

The same run as ``main.py`` (gin files, then bindings; in-process for one worker, spawned workers
otherwise), with two conveniences for notebooks: bindings as a dict, and a pandas DataFrame of
interactions that becomes a store through the custom-data source (``data/sources/custom.py``,
the path of ``preprocess_public_data.py --dataset csv``). See docs/python.md.

    run = generative_recommenders.train(
        "configs/ml-100k/sasrec.gin",
        {"num_epochs": 5},
        interactions=events,  # columns user_id, item_id, timestamp (and optionally rating)
    )
    run.metrics["test"]["ndcg@10"]
    rec = run.recommender()
    rec.recommend(["u1"], k=10)
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generative_recommenders.errors import UserInputError

if TYPE_CHECKING:
    import pandas as pd

    from generative_recommenders.recommend.recommender import Recommender

DATAFRAME_STORE = "dataframe"


@dataclass
class TrainedRun:
    """A finished run: its final metrics, its folder and a way to recommend with it.

    Attributes:
        metrics: what ``main.py`` prints: ``{"test": {...}, "protocol": ...}`` (and ``"valid"``,
            ``"best_epoch"`` under the validation protocol).
        run_dir: the run folder (TensorBoard scalars, ``config.gin``, ``run.json``, ``metrics.json``).
        data_dir: where the run's store is (the recommender reads the user histories from it).
    """

    metrics: dict[str, Any]
    run_dir: Path
    data_dir: Path

    def recommender(
        self, checkpoint: str = "best", device: str = "cpu", **kwargs: Any
    ) -> Recommender:
        """The run's :class:`~generative_recommenders.recommend.recommender.Recommender`."""
        from generative_recommenders.recommend.recommender import Recommender

        return Recommender.from_run(
            self.run_dir, checkpoint=checkpoint, data_dir=self.data_dir, device=device, **kwargs
        )


def as_bindings(bindings: Mapping[str, Any] | Sequence[str] | str) -> list[str]:
    """gin binding lines from a dict (``{"num_epochs": 3}`` means ``train_fn.num_epochs = 3``;
    a dotted key is used as it is) or from lines already written."""
    if isinstance(bindings, str):
        return [bindings]
    if isinstance(bindings, Mapping):
        lines = []
        for key, value in bindings.items():
            name = key if "." in key else f"train_fn.{key}"
            lines.append(f"{name} = {value!r}")  # Python literals are gin literals
        return lines
    return [str(line) for line in bindings]


def dataframe_store(
    interactions: pd.DataFrame,
    data_dir: str | Path,
    name: str = DATAFRAME_STORE,
    user_id_column: str = "user_id",
    item_id_column: str = "item_id",
    timestamp_column: str = "timestamp",
    rating_column: str | None = None,
    min_user_interactions: int = 2,
    min_item_interactions: int = 1,
) -> str:
    """Write ``interactions`` as the store ``name`` under ``data_dir`` (the custom-data path).

    Returns the store's name. Raises UserInputError for missing columns or bad values (one line).
    """
    from generative_recommenders.data.preprocess import preprocess
    from generative_recommenders.data.sources import SourceOptions

    wanted = [user_id_column, item_id_column, timestamp_column]
    if rating_column is not None:
        wanted.append(rating_column)
    missing = [column for column in wanted if column not in interactions.columns]
    if missing:
        raise UserInputError(
            f"interactions: no column {', '.join(map(repr, missing))} (columns: "
            f"{', '.join(map(str, interactions.columns))}); pass user_id_column=..., etc."
        )
    with tempfile.TemporaryDirectory(prefix="gr-dataframe-") as folder:
        # The custom source reads files; a CSV of the needed columns is the exchange format.
        events = Path(folder) / f"{name}.csv"
        interactions[wanted].to_csv(events, index=False)
        preprocess(
            "csv",
            SourceOptions(
                data_dir=Path(data_dir),
                input_file=events,
                name=name,
                user_col=user_id_column,
                item_col=item_id_column,
                timestamp_col=timestamp_column,
                rating_col=rating_column or "rating",
                rating_required=rating_column is not None,
                min_user_interactions=min_user_interactions,
                min_item_interactions=min_item_interactions,
            ),
        )
    return name


def train(
    config_files: str | Sequence[str] = (),
    bindings: Mapping[str, Any] | Sequence[str] | str = (),
    *,
    interactions: pd.DataFrame | None = None,
    dataset_name: str = DATAFRAME_STORE,
    user_id_column: str = "user_id",
    item_id_column: str = "item_id",
    timestamp_column: str = "timestamp",
    rating_column: str | None = None,
    data_dir: str | Path = "tmp/",
    exp_dir: str | Path = "exps/",
    ckpt_dir: str | Path = "ckpts/",
    resume: str | None = None,
    device: str = "auto",
    nproc_per_node: int = 1,
    master_port: int = 12355,
) -> TrainedRun:
    """Train one run and return its handle.

    Args:
        config_files: gin files, applied in order (e.g. ``"configs/ml-100k/hstu.gin"``).
        bindings: applied after the files; a dict of ``train_fn`` settings (or dotted names) or
            gin lines.
        interactions: a DataFrame of events; it becomes the store ``dataset_name`` under
            ``data_dir`` and the run trains on it (``train_fn.dataset_name`` is set for you).
        user_id_column, item_id_column, timestamp_column, rating_column: its column names
            (timestamps numeric seconds; ratings optional).
        data_dir, exp_dir, ckpt_dir, resume, device, nproc_per_node, master_port: as main.py's flags.

    Raises:
        UserInputError: a bad file, binding, column or value, in one line (as main.py prints it).
    """
    from generative_recommenders.config.run import RunOptions, run_training
    from generative_recommenders.training.launch import Topology, resolve_device

    files = (config_files,) if isinstance(config_files, str | Path) else tuple(config_files)
    lines = as_bindings(bindings)
    if interactions is not None:
        name = dataframe_store(
            interactions,
            data_dir,
            dataset_name,
            user_id_column,
            item_id_column,
            timestamp_column,
            rating_column,
        )
        lines.append(f"train_fn.dataset_name = {name!r}")
    options = RunOptions(
        gin_config_files=tuple(str(f) for f in files),
        gin_bindings=tuple(lines),
        data_dir=str(data_dir),
        exp_dir=str(exp_dir),
        ckpt_dir=str(ckpt_dir),
        resume=resume,
    )
    topology = Topology(
        master_addr="localhost",
        master_port=master_port,
        nproc_per_node=nproc_per_node,
        nnodes=1,
        node_rank=0,
        device=resolve_device(device),
    )
    result = run_training(options, topology)
    if not result or "run_dir" not in result:
        raise RuntimeError("training returned no result (not rank 0 of the job?)")
    return TrainedRun(metrics=result, run_dir=Path(result["run_dir"]), data_dir=Path(data_dir))

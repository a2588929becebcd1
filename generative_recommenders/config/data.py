"""The data settings and loaders, and the gin registration of the loader factory.

Users' gin files set ``create_data_loader.num_workers`` and ``create_data_loader.prefetch_factor``
(the paper's binding names); call ``create_data_loader`` from here to get those bindings applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import gin

from generative_recommenders.data import loader as _loader
from generative_recommenders.data.dataset import SequenceDataset
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import check_positive
from generative_recommenders.training.distributed import DistributedContext
from generative_recommenders.training.trainer import RunData, SplitData

create_data_loader = gin.external_configurable(
    _loader.create_data_loader, name="create_data_loader"
)

# ignore_last_n of (training, selection, test) windows per protocol.
SPLIT_IGNORE_LAST_N = {"test": (1, 0, None), "valid": (2, 1, 0)}


@dataclass(frozen=True)
class DataSettings:
    """``train_fn`` bindings of the store, the windows and the batches."""

    dataset_name: str = "ml-20m"
    max_sequence_length: int = 200
    positional_sampling_ratio: float = 1.0
    local_batch_size: int = 128
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        for name in ("max_sequence_length", "local_batch_size", "eval_batch_size"):
            check_positive(f"train_fn.{name}", getattr(self, name))
        if not 0.0 < self.positional_sampling_ratio <= 1.0:
            raise ValueError(
                f"train_fn.positional_sampling_ratio={self.positional_sampling_ratio!r}: "
                "expected a value in (0, 1]"
            )


def build_data(
    settings: DataSettings,
    store: SequenceStore,
    context: DistributedContext,
    eval_split: str,
    seed: int,
) -> RunData:
    """Loaders for training, selection and (validation protocol) test, for this rank."""
    train_n, selection_n, test_n = SPLIT_IGNORE_LAST_N[eval_split]

    def split(ignore_last_n: int, train: bool) -> SplitData:
        dataset = SequenceDataset(
            store,
            max_sequence_length=settings.max_sequence_length,
            ignore_last_n=ignore_last_n,
            positional_sampling_ratio=settings.positional_sampling_ratio if train else 1.0,
            seed=seed,
        )
        loader = create_data_loader(
            dataset,
            batch_size=settings.local_batch_size if train else settings.eval_batch_size,
            world_size=context.world_size,
            rank=context.rank,
            shuffle=train,
            random_seed=seed,
        )
        return SplitData(loader=loader, dataset=dataset)

    return RunData(
        train=split(train_n, train=True),
        selection=split(selection_n, train=False),
        test=split(test_n, train=False) if test_n is not None else None,
        set_epoch=_loader.set_loader_epoch,
    )


__all__ = ["DataSettings", "build_data", "create_data_loader"]

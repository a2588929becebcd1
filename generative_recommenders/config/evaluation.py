"""The evaluation settings and the evaluate function the trainer calls (retrieval + metrics)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from generative_recommenders.config.choices import choose
from generative_recommenders.data.store import SequenceStore
from generative_recommenders.errors import check_choice
from generative_recommenders.evaluation import metrics as _metrics  # noqa: F401 (registration)
from generative_recommenders.evaluation.evaluator import FILTER_SEEN, Evaluator
from generative_recommenders.evaluation.sampled import SAMPLED_MODES
from generative_recommenders.registry import METRICS
from generative_recommenders.retrieval import CandidateIndex
from generative_recommenders.retrieval.brute_force import MIPSBruteForceTopK, MoLBruteForceTopK
from generative_recommenders.training.inputs import encode_queries
from generative_recommenders.training.trainer import SplitData

TOP_K_METHODS: dict[str, type] = {
    "MIPSBruteForceTopK": MIPSBruteForceTopK,
    "MoLBruteForceTopK": MoLBruteForceTopK,
}
DEFAULT_QUERY_CHUNK = 1024


@dataclass(frozen=True)
class EvaluationSettings:
    """``train_fn`` bindings of full-catalogue evaluation."""

    top_k_method: str = "MIPSBruteForceTopK"
    eval_user_max_batch_size: int | None = None
    # "window": the model's input window; "all": the whole history; "none": nothing (RecBole's way)
    filter_seen: str = "window"
    sampled_eval: str | None = None  # None | "uni100" | "pop100"
    metrics: tuple[str, ...] | None = None  # registered metric names; None: all of them

    def __post_init__(self) -> None:
        check_choice("train_fn.top_k_method", self.top_k_method, tuple(TOP_K_METHODS))
        check_choice("train_fn.filter_seen", self.filter_seen, FILTER_SEEN)
        check_choice("train_fn.sampled_eval", self.sampled_eval, (None, *SAMPLED_MODES))
        if self.metrics is not None:
            object.__setattr__(self, "metrics", tuple(self.metrics))
            for name in self.metrics:
                METRICS.entry(name)


def build_evaluate_fn(
    settings: EvaluationSettings,
    store: SequenceStore,
    sampler: nn.Module,
    catalogue: torch.Tensor,
    device: torch.device,
    seed: int,
) -> Callable[[nn.Module, SplitData, int | None], dict[str, float]]:
    """``(encoder, split, num_batches) -> metrics`` over the whole catalogue."""
    top_k_class = choose("train_fn.top_k_method", settings.top_k_method, TOP_K_METHODS)
    evaluator = Evaluator(
        filter_seen=settings.filter_seen,
        sampled_negatives=settings.sampled_eval,
        item_popularity=store.item_counts() if settings.sampled_eval == "pop100" else None,
        seed=seed,
        metric_names=settings.metrics,
    )
    query_chunk = settings.eval_user_max_batch_size or DEFAULT_QUERY_CHUNK

    def evaluate(encoder: nn.Module, split: SplitData, num_batches: int | None):
        item_embeddings = sampler.normalize_embeddings(encoder.get_item_embeddings(catalogue))
        retrieval = top_k_class(
            encoder.similarity,
            CandidateIndex(catalogue, item_embeddings.float()),
            query_chunk_size=query_chunk,
        )
        seen_fn = split.dataset.seen_items if settings.filter_seen == "all" else None
        return evaluator.evaluate(
            split.loader,
            query_fn=lambda batch: encode_queries(encoder, batch),
            retrieval=retrieval,
            seen_fn=seen_fn,
            num_batches=num_batches,
            device=device,
        )

    return evaluate

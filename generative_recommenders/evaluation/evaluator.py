"""Full-catalogue evaluation of next-item prediction: ranks, per-user metrics, exact DDP reduction.

Protocol (see docs/evaluation.md): each evaluated row is one user whose held-out target item
(``batch.target_ids``) follows the history ``batch.ids``. The history is encoded into one query,
every catalogue item is scored, the seen items are filtered out ("window": the ids in the batch;
"all": ``seen_fn(batch)``, the user's whole history before the target), and the target's exact rank
among the remaining items gives the per-user metrics (capped at ``k = min(k_max, catalogue size)``).
Per-user sums and user counts are summed over processes, then divided, so the result does not depend
on the world size. Rows whose target id is 0 are padding and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice

import numpy as np
import torch
import torch.distributed as dist

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.evaluation import metrics
from generative_recommenders.evaluation.sampled import SAMPLED_MODES, SampledNegatives
from generative_recommenders.retrieval.brute_force import BruteForceTopK
from generative_recommenders.retrieval.index import CandidateIndex

FILTER_SEEN = ("window", "all", "none")
SAMPLED_HR_KS: tuple[int, ...] = (1, 5, 10, 50)
SAMPLED_NDCG_KS: tuple[int, ...] = (5, 10, 50)
_SAMPLED = ("hr", "ndcg", "mrr")  # the sampled protocol reports the paper's three families

QueryFn = Callable[[SequenceBatch], torch.Tensor]
SeenFn = Callable[[SequenceBatch], torch.Tensor]


class Evaluator:
    """Computes HR/NDCG/MRR over evaluation batches.

    Args:
        top_k_method: builds the retriever from an index when ``evaluate`` is given a
            :class:`CandidateIndex`: a :class:`BruteForceTopK` instance (its index is replaced)
            or a callable ``index -> BruteForceTopK`` (e.g. ``functools.partial(
            MIPSBruteForceTopK, similarity, query_chunk_size=...)`` called as ``f(index=index)``).
            May be None when ``evaluate`` always receives a retriever.
        filter_seen: "window" (filter ``batch.ids``), "all" (filter ``seen_fn(batch)``) or
            "none" (rank every catalogue item, history included, as RecBole's sequential
            full ranking does).
        k_max: retrieval cap; the effective cap is ``min(k_max, catalogue size)``.
        rating_threshold: targets rated at least this also feed the ``*_rated4`` metrics.
        sampled_negatives: None, "uni100" or "pop100": additionally rank the target among 100
            seeded negatives; those metrics are prefixed "sampled_uni100/" or "sampled_pop100/".
        item_popularity: counts indexed by item id, for "pop100".
        seed: base seed of the sampled negatives (each user's draw depends on (seed, user id)).
        metric_names: registered metrics to report (``evaluation.metrics``; None: all of them).
    """

    def __init__(
        self,
        top_k_method: BruteForceTopK | Callable[..., BruteForceTopK] | None = None,
        filter_seen: str = "window",
        k_max: int = 2500,
        rating_threshold: float = 4.0,
        sampled_negatives: str | None = None,
        item_popularity: np.ndarray | None = None,
        seed: int = 0,
        metric_names: tuple[str, ...] | None = None,
    ) -> None:
        if filter_seen not in FILTER_SEEN:
            raise ValueError(f"filter_seen={filter_seen!r} is not one of: {', '.join(FILTER_SEEN)}")
        if sampled_negatives is not None and sampled_negatives not in SAMPLED_MODES:
            raise ValueError(
                f"sampled_negatives={sampled_negatives!r} is not one of: "
                f"None, {', '.join(SAMPLED_MODES)}"
            )
        if k_max < 1:
            raise ValueError(f"k_max must be >= 1, got {k_max}")
        self.top_k_method = top_k_method
        self.filter_seen = filter_seen
        self.k_max = int(k_max)
        self.rating_threshold = float(rating_threshold)
        self.sampled_negatives = sampled_negatives
        self.item_popularity = item_popularity
        self.seed = int(seed)
        self.metric_names = None if metric_names is None else tuple(metric_names)

    def _retriever(self, retrieval: BruteForceTopK | CandidateIndex) -> BruteForceTopK:
        if not isinstance(retrieval, CandidateIndex):
            return retrieval
        if isinstance(self.top_k_method, BruteForceTopK):
            self.top_k_method.update_index(retrieval)
            return self.top_k_method
        if self.top_k_method is None:
            raise ValueError("Evaluator: given an index but no top_k_method to build a retriever")
        return self.top_k_method(index=retrieval)

    def _invalid_ids(self, batch: SequenceBatch, seen_fn: SeenFn | None) -> torch.Tensor:
        if self.filter_seen == "window":
            return batch.ids
        if self.filter_seen == "none":  # id 0 is never a candidate: nothing is filtered
            return batch.ids.new_zeros(batch.ids.shape[0], 1)
        if seen_fn is None:
            raise ValueError("filter_seen='all' needs seen_fn (the users' whole histories)")
        return seen_fn(batch)

    def _full_metrics(self, ranks: torch.Tensor, k_max: int) -> dict[str, torch.Tensor]:
        return metrics.per_user_metrics(
            ranks, k_max, metrics.HR_KS, metrics.NDCG_KS, self.metric_names
        )

    def _keys(self) -> list[str]:
        """The accumulator layout; identical on every rank (depends on settings only)."""
        full = list(self._full_metrics(torch.ones(1, dtype=torch.int64), 1))
        rated = list(metrics.rated_user_metrics(torch.ones(1, dtype=torch.int64), 1))
        suffix = metrics.rated_suffix(self.rating_threshold)
        keys = ["num_users", *full, f"num_users{suffix}", *[k + suffix for k in rated]]
        if self.sampled_negatives is not None:
            sampled = metrics.per_user_metrics(
                torch.ones(1, dtype=torch.int64), 1, SAMPLED_HR_KS, SAMPLED_NDCG_KS, _SAMPLED
            )
            keys += [f"sampled_{self.sampled_negatives}/{k}" for k in sampled]
        return keys

    @torch.no_grad()
    def evaluate(
        self,
        batches: Iterable[SequenceBatch],
        query_fn: QueryFn,
        retrieval: BruteForceTopK | CandidateIndex,
        seen_fn: SeenFn | None = None,
        num_batches: int | None = None,
        device: torch.device | str | None = None,
    ) -> dict[str, float]:
        """Metrics averaged over the evaluated users of all processes.

        Args:
            batches: this process's evaluation batches (a disjoint share of the users).
            query_fn: batch -> [B, D] query embeddings (the model in eval mode).
            retrieval: a retriever, or a :class:`CandidateIndex` turned into one by ``top_k_method``.
            seen_fn: batch -> [B, H] int64 ids seen before the target (0 = none); for "all".
            num_batches: evaluate only the first that many batches (partial evaluation).
            device: where batches are moved; None leaves them where they are.

        Returns:
            {"num_users", "hr@k", "ndcg@k", "mrr", "num_users_rated4", "hr@10_rated4", ...}; the
            rated keys are present only when some target is rated >= the threshold, the
            "sampled_*/" keys only in sampled mode. Metrics are NaN when no user was evaluated.
        """
        retriever = self._retriever(retrieval)
        k_max = min(self.k_max, retriever.num_items)
        suffix = metrics.rated_suffix(self.rating_threshold)
        keys = self._keys()
        acc_device = torch.device(device) if device is not None else retriever.index.device
        totals = torch.zeros(len(keys), dtype=torch.float64, device=acc_device)
        sampler = None
        if self.sampled_negatives is not None:
            sampler = SampledNegatives(
                self.sampled_negatives,
                retriever.index.item_ids.cpu().numpy(),
                self.item_popularity,
                self.seed,
            )
        for batch in islice(batches, num_batches):
            if device is not None:
                batch = batch.to(device)
            keep = batch.target_ids != 0
            if not bool(keep.any()):
                continue
            queries = query_fn(batch)[keep]
            invalid = self._invalid_ids(batch, seen_fn)[keep]
            targets = batch.target_ids[keep]
            user_ids = batch.user_ids[keep]
            ranks = retriever.target_ranks(queries, targets, invalid, user_ids)
            values = {"num_users": torch.ones_like(ranks, dtype=torch.float64)}
            values.update(self._full_metrics(ranks, k_max))
            rated = (batch.target_ratings[keep] >= self.rating_threshold).to(ranks.device)
            values[f"num_users{suffix}"] = rated.to(torch.float64)
            for name, per_user in metrics.rated_user_metrics(ranks, k_max).items():
                values[name + suffix] = per_user * rated
            if sampler is not None:
                sampled_ranks = self._sampled_ranks(
                    sampler, retriever, queries, targets, invalid, user_ids
                )
                prefix = f"sampled_{self.sampled_negatives}/"
                sampled = metrics.per_user_metrics(
                    sampled_ranks,
                    sampler.num_negatives + 1,
                    SAMPLED_HR_KS,
                    SAMPLED_NDCG_KS,
                    _SAMPLED,
                )
                values.update({prefix + name: v for name, v in sampled.items()})
            # One device-side add per batch: no host sync inside the loop.
            totals += torch.stack([values[name].sum() for name in keys]).to(acc_device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        return self._averages(keys, totals.cpu().tolist(), suffix)

    def _averages(self, keys: list[str], totals: list[float], suffix: str) -> dict[str, float]:
        reduced = dict(zip(keys, totals, strict=True))
        users, rated_users = reduced["num_users"], reduced[f"num_users{suffix}"]
        out: dict[str, float] = {}
        for name, total in reduced.items():
            if name.startswith("num_users"):
                if name != f"num_users{suffix}" or rated_users > 0:
                    out[name] = total
            elif name.endswith(suffix):
                if rated_users > 0:
                    out[name] = total / rated_users
            else:
                out[name] = total / users if users > 0 else float("nan")
        return out

    def _sampled_ranks(
        self,
        sampler: SampledNegatives,
        retriever: BruteForceTopK,
        queries: torch.Tensor,
        targets: torch.Tensor,
        invalid: torch.Tensor,
        user_ids: torch.Tensor,
    ) -> torch.Tensor:
        """[B] ranks of the target among its seeded negatives; filtered/unknown target = M + 2."""
        num = sampler.num_negatives
        invalid_np = invalid.cpu().numpy()
        targets_np = targets.cpu().numpy()
        candidates = np.zeros((targets_np.shape[0], 1 + num), dtype=np.int64)
        for row, (user, target) in enumerate(zip(user_ids.cpu().tolist(), targets_np, strict=True)):
            excluded = np.append(invalid_np[row], target)
            negatives = sampler.sample(user, excluded[excluded != 0])
            candidates[row, 0] = target
            candidates[row, 1 : 1 + negatives.shape[0]] = negatives
        candidate_ids = torch.from_numpy(candidates).to(queries.device)
        scores = retriever.score_items(queries, candidate_ids, user_ids)  # [B, 1 + M]
        target_scores = scores[:, :1]
        ranks = 1 + (scores[:, 1:] >= target_scores).sum(dim=1)
        missed = (invalid == targets.unsqueeze(1)).any(dim=1).to(ranks.device) | ~torch.isfinite(
            target_scores.squeeze(1)
        )
        return torch.where(missed, num + 2, ranks).to(torch.int64)

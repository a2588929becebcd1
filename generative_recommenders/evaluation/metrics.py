"""Ranking metrics as pure functions of 1-based target ranks.

A rank above ``k_max`` (the retrieval cap, ``min(2500, catalogue size)``) is a miss everywhere:

- ``hr@k   = 1                  if rank <= min(k, k_max) else 0``
- ``ndcg@k = 1 / log2(rank + 1) if rank <= min(k, k_max) else 0``  (one relevant item, so IDCG = 1)
- ``mrr    = 1 / min(rank, k_max + 1)``  (a miss contributes ``1 / (k_max + 1)``, as in the paper's
  code, which appended the target after its top-k list)

Every function maps ranks ``[B]`` to per-user values ``[B]`` float64; averages are the caller's
business (sums and counts, so they reduce exactly across processes).
"""

from __future__ import annotations

import torch

from generative_recommenders.registry import METRICS

HR_KS: tuple[int, ...] = (1, 10, 50, 100, 200, 500, 1000)
NDCG_KS: tuple[int, ...] = (1, 10, 50, 100, 200)
RATED_HR_KS: tuple[int, ...] = (10, 50)
RATED_NDCG_KS: tuple[int, ...] = (10,)


# A metric is ``(ranks [B] int64, k, k_max) -> [B] float64``, registered with the cut-offs it is
# reported at (``ks``; ``(None,)`` for one without a cut-off, reported under its bare name).
@METRICS.register("hr", ks=HR_KS)
def hit_rate(ranks: torch.Tensor, k: int, k_max: int) -> torch.Tensor:
    """[B] ranks -> [B] float64: 1 where rank <= min(k, k_max)."""
    return (ranks <= min(k, k_max)).to(torch.float64)


@METRICS.register("ndcg", ks=NDCG_KS)
def ndcg(ranks: torch.Tensor, k: int, k_max: int) -> torch.Tensor:
    """[B] ranks -> [B] float64: 1 / log2(rank + 1) where rank <= min(k, k_max), else 0."""
    gains = 1.0 / torch.log2(ranks.to(torch.float64) + 1.0)
    return torch.where(ranks <= min(k, k_max), gains, torch.zeros_like(gains))


@METRICS.register("mrr", ks=(None,))
def reciprocal_rank(ranks: torch.Tensor, k: None, k_max: int) -> torch.Tensor:
    """[B] ranks -> [B] float64: 1 / min(rank, k_max + 1)."""
    return 1.0 / ranks.clamp(max=k_max + 1).to(torch.float64)


def per_user_metrics(
    ranks: torch.Tensor,
    k_max: int,
    hr_ks: tuple[int, ...] = HR_KS,
    ndcg_ks: tuple[int, ...] = NDCG_KS,
    names: tuple[str, ...] | None = None,
) -> dict[str, torch.Tensor]:
    """[B] int64 ranks -> {"hr@k", "ndcg@k", "mrr", <other registered metrics>: [B] float64}.

    ``names`` picks registered metrics (None: all, in registration order); ``hr_ks`` and
    ``ndcg_ks`` override the cut-offs of the two built-in families (sampled evaluation uses fewer).
    """
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    overrides = {"hr": hr_ks, "ndcg": ndcg_ks}
    out: dict[str, torch.Tensor] = {}
    for name in METRICS.names() if names is None else names:
        entry = METRICS.entry(name)
        for k in overrides.get(name, entry.info.get("ks", (None,))):
            out[name if k is None else f"{name}@{k}"] = entry.target(ranks, k, k_max)
    return out


def rated_suffix(rating_threshold: float) -> str:
    """The key suffix of metrics restricted to targets rated >= threshold: "_rated4"."""
    return f"_rated{rating_threshold:g}"


def rated_user_metrics(ranks: torch.Tensor, k_max: int) -> dict[str, torch.Tensor]:
    """The subset reported for highly rated targets: hr@10, hr@50, ndcg@10, mrr (per user)."""
    return per_user_metrics(ranks, k_max, RATED_HR_KS, RATED_NDCG_KS, ("hr", "ndcg", "mrr"))

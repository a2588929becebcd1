"""Seeded negatives for sampled-metric evaluation ("uni100" / "pop100").

Each user's negatives depend only on (seed, user id), never on batching or the number of processes,
so sampled metrics are reproducible and identical for any world size.
"""

from __future__ import annotations

import numpy as np

SAMPLED_MODES = ("uni100", "pop100")


class SampledNegatives:
    """Draws, per user, distinct catalogue items that are neither seen nor the target.

    Args:
        mode: "uni100" (uniform over the catalogue) or "pop100" (probability proportional to
            ``item_popularity[id]``, drawn without replacement by successive sampling).
        catalogue_ids: [X] int64 candidate ids.
        item_popularity: indexed by item id (length > max catalogue id); required for "pop100".
        seed: base seed.
        num_negatives: negatives per user (100).
    """

    def __init__(
        self,
        mode: str,
        catalogue_ids: np.ndarray,
        item_popularity: np.ndarray | None,
        seed: int,
        num_negatives: int = 100,
    ) -> None:
        if mode not in SAMPLED_MODES:
            raise ValueError(
                f"sampled_negatives={mode!r} is not one of: {', '.join(SAMPLED_MODES)}"
            )
        self.mode = mode
        self.num_negatives = int(num_negatives)
        self._catalogue = np.asarray(catalogue_ids, dtype=np.int64)
        self._seed = int(seed) % 2**63
        self._cdf: np.ndarray | None = None
        self._probs: np.ndarray | None = None
        if mode == "pop100":
            if item_popularity is None:
                raise ValueError("sampled_negatives='pop100' needs item_popularity")
            popularity = np.asarray(item_popularity, dtype=np.float64)
            if popularity.ndim != 1 or popularity.shape[0] <= int(self._catalogue.max()):
                raise ValueError(
                    "item_popularity must be 1-D and indexed by item id "
                    f"(length > {int(self._catalogue.max())}), got shape {popularity.shape}"
                )
            weights = np.clip(popularity[self._catalogue], 0.0, None)
            if weights.sum() <= 0:
                raise ValueError("item_popularity gives every catalogue item zero weight")
            self._probs = weights / weights.sum()
            self._cdf = np.cumsum(self._probs)

    def _draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        if self._cdf is None:
            return rng.integers(0, self._catalogue.shape[0], size=size)
        positions = np.searchsorted(self._cdf, rng.random(size) * self._cdf[-1], side="right")
        return np.minimum(positions, self._catalogue.shape[0] - 1)

    def sample(self, user_id: int, excluded: np.ndarray) -> np.ndarray:
        """[M] distinct ids not in ``excluded`` (fewer only when fewer items are eligible)."""
        rng = np.random.default_rng([self._seed, int(user_id) % 2**63])
        banned = set(excluded.tolist())
        chosen: list[int] = []
        taken: set[int] = set()
        for _ in range(8):
            for position in self._draw(rng, 2 * (self.num_negatives - len(chosen)) + 16).tolist():
                item = int(self._catalogue[position])
                if item in banned or item in taken:
                    continue
                chosen.append(item)
                taken.add(item)
                if len(chosen) == self.num_negatives:
                    return np.asarray(chosen, dtype=np.int64)
        # Rejection is slow when most of the mass is banned: finish exactly over the eligible rest.
        eligible = ~np.isin(self._catalogue, np.asarray(sorted(banned | taken), dtype=np.int64))
        if self._probs is not None:
            eligible &= self._probs > 0
        rest = self._catalogue[eligible]
        need = min(self.num_negatives - len(chosen), rest.shape[0])
        probs = None
        if self._probs is not None and need > 0:
            probs = self._probs[eligible] / self._probs[eligible].sum()
        extra = rng.choice(rest, size=need, replace=False, p=probs) if need > 0 else rest[:0]
        return np.concatenate([np.asarray(chosen, dtype=np.int64), extra.astype(np.int64)])

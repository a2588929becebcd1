"""The candidate set retrieval ranks: catalogue item ids with their embeddings."""

from __future__ import annotations

import torch


class CandidateIndex:
    """X distinct catalogue items: ids [X] int64 (no 0) and embeddings [X, D].

    The embeddings are what the similarity's ``prepare_items`` receives (already L2-normalised when
    the model normalises items). ``version`` increases on every :meth:`update_embeddings`, so
    retrievers know when their prepared item state is stale.
    """

    def __init__(self, item_ids: torch.Tensor, item_embeddings: torch.Tensor) -> None:
        if item_ids.dim() != 1 or item_ids.numel() == 0:
            raise ValueError("CandidateIndex: item_ids must be a non-empty 1-D tensor")
        if item_ids.dtype != torch.int64:
            raise ValueError(f"CandidateIndex: item_ids must be int64, got {item_ids.dtype}")
        if bool((item_ids <= 0).any()):
            raise ValueError("CandidateIndex: item_ids must be positive (0 is padding)")
        sorted_ids, order = torch.sort(item_ids)
        if sorted_ids.numel() > 1 and bool((sorted_ids[1:] == sorted_ids[:-1]).any()):
            raise ValueError("CandidateIndex: item_ids must be distinct")
        self.item_ids = item_ids
        self._sorted_ids = sorted_ids
        self._order = order
        self.version = 0
        self.item_embeddings = item_embeddings
        self.update_embeddings(item_embeddings)

    @property
    def num_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def device(self) -> torch.device:
        return self.item_embeddings.device

    def update_embeddings(self, item_embeddings: torch.Tensor) -> None:
        """Replace the embeddings [X, D] (same ids, same order); invalidates prepared states."""
        if item_embeddings.dim() != 2 or item_embeddings.shape[0] != self.num_items:
            raise ValueError(
                f"CandidateIndex: item_embeddings must be [{self.num_items}, D], "
                f"got {list(item_embeddings.shape)}"
            )
        device = item_embeddings.device
        self.item_embeddings = item_embeddings.detach()
        self.item_ids = self.item_ids.to(device)
        self._sorted_ids = self._sorted_ids.to(device)
        self._order = self._order.to(device)
        self.version += 1

    def positions(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [*] int64 -> [*] int64 row of each id in the index, -1 where absent (0 included)."""
        ids = ids.to(self._sorted_ids.device)
        where = torch.searchsorted(self._sorted_ids, ids)
        clamped = where.clamp(max=self.num_items - 1)
        found = self._sorted_ids[clamped] == ids
        return torch.where(found, self._order[clamped], torch.full_like(ids, -1))

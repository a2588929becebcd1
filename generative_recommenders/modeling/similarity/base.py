"""The contract every similarity (interaction) module keeps; loss and retrieval share it.

A similarity module is an ``nn.Module`` with:

- ``forward(query_embeddings [B, D], item_embeddings [B, R, D] | [X, D], user_ids [B] | None)``
  -> ``(scores [B, R] | [B, X], aux_losses: dict[str, Tensor])``. A 3-D ``item_embeddings`` gives
  each query its own R candidates; a 2-D one is a candidate set shared by all queries.
- ``prepare_queries(query_embeddings [B, D], user_ids [B] | None) -> tuple[Tensor, ...]``, each
  tensor with leading dimension B, and ``prepare_items(item_embeddings [X, D]) -> tuple[Tensor, ...]``,
  each with leading dimension X: the query- and item-side work done once, so retrieval can slice
  both along their first dimension into chunks.
- ``score_prepared(query_state, item_state) -> [B, X]``: scores from prepared (possibly sliced) states;
  equal to ``forward(q, x)[0]`` in eval mode.
- ``debug_str() -> str`` for run names.
- ``dot_product: bool`` (optional, False when absent): True when the score is exactly ``<q, x>``,
  so the sampled losses may use the fused dot-product kernels of ``ops.sampled_softmax``.
"""

from __future__ import annotations

from typing import Protocol

import torch

PreparedState = tuple[torch.Tensor, ...]


class SimilarityModule(Protocol):
    dot_product: bool

    def __call__(
        self,
        query_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor,
        user_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def prepare_queries(
        self, query_embeddings: torch.Tensor, user_ids: torch.Tensor | None = None
    ) -> PreparedState: ...

    def prepare_items(self, item_embeddings: torch.Tensor) -> PreparedState: ...

    def score_prepared(
        self, query_state: PreparedState, item_state: PreparedState
    ) -> torch.Tensor: ...

    def debug_str(self) -> str: ...

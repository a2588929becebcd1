"""Dot-product similarity: score(q, x) = <q, x>."""

from __future__ import annotations

import torch
from torch import nn

from generative_recommenders.modeling.similarity.base import PreparedState
from generative_recommenders.registry import SIMILARITIES


@SIMILARITIES.register("DotProduct")
class DotProductSimilarity(nn.Module):
    """Parameter-free inner product; see :mod:`.base` for the contract."""

    dot_product = True  # score(q, x) is exactly <q, x>: the losses may use fused dot kernels

    def forward(
        self,
        query_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor,
        user_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """[B, D] x ([B, R, D] | [X, D]) -> ([B, R] | [B, X], {})."""
        if item_embeddings.dim() == 3:
            scores = torch.bmm(item_embeddings, query_embeddings.unsqueeze(-1)).squeeze(-1)
        else:
            scores = query_embeddings @ item_embeddings.t()
        return scores, {}

    def prepare_queries(
        self, query_embeddings: torch.Tensor, user_ids: torch.Tensor | None = None
    ) -> PreparedState:
        return (query_embeddings,)

    def prepare_items(self, item_embeddings: torch.Tensor) -> PreparedState:
        return (item_embeddings,)

    def score_prepared(self, query_state: PreparedState, item_state: PreparedState) -> torch.Tensor:
        """([B, D],) x ([X, D],) -> [B, X]."""
        return query_state[0] @ item_state[0].t()

    def debug_str(self) -> str:
        return "dot"

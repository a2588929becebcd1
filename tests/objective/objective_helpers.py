"""A small learned similarity that keeps the similarity contract (a stand-in for MoL in tests)."""

from __future__ import annotations

import torch
from torch import nn


class LearnedSimilarity(nn.Module):
    """score = <W_q q + u_emb[uid], tanh(W_x x)>, with two auxiliary losses."""

    def __init__(self, dim: int, num_users: int = 16) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.item = nn.Linear(dim, dim)
        self.uid = nn.Embedding(num_users, dim)

    def prepare_queries(self, query_embeddings, user_ids=None):
        queries = self.query(query_embeddings)
        if user_ids is not None:
            queries = queries + self.uid(user_ids)
        return (queries,)

    def prepare_items(self, item_embeddings):
        return (torch.tanh(self.item(item_embeddings)),)

    def score_prepared(self, query_state, item_state):
        return query_state[0] @ item_state[0].t()

    def forward(self, query_embeddings, item_embeddings, user_ids=None):
        (queries,) = self.prepare_queries(query_embeddings, user_ids)
        if item_embeddings.dim() == 3:
            items = torch.tanh(self.item(item_embeddings))
            scores = torch.einsum("bd,brd->br", queries, items)
        else:
            scores = self.score_prepared((queries,), self.prepare_items(item_embeddings))
        aux = {"uid_embedding_l2_norm": self.uid.weight.pow(2).mean(), "score_mean": scores.mean()}
        return scores, aux

    def debug_str(self) -> str:
        return "learned"

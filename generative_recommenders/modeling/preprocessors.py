"""Input-feature preprocessors: item embeddings (+ payloads) -> encoder inputs.

Every preprocessor maps
``(past_lengths [B], past_ids [B, N], past_embeddings [B, N, D], past_payloads)`` to
``(lengths [B], user_embeddings [B, N', D'], valid_mask [B, N', 1] float)`` where
``N' = tokens_per_event * N``. Positions at or after a user's length are padding: their rows are
zero and their mask is 0. ``positions`` ([B, N] int64 absolute event positions, default
``0..N-1``) lets incremental encoding embed events appended after an already-encoded prefix.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from generative_recommenders.ops import jagged
from generative_recommenders.ops.dropout import Dropout

RATINGS_KEY = "ratings"


def _default_positions(past_ids: torch.Tensor) -> torch.Tensor:
    B, N = past_ids.shape
    return torch.arange(N, device=past_ids.device).unsqueeze(0).expand(B, N)


def _init_positional(table: nn.Embedding, dim: int) -> None:
    std = math.sqrt(1.0 / dim)
    nn.init.trunc_normal_(table.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _rating_ids(past_payloads: dict[str, torch.Tensor], num_ratings: int) -> torch.Tensor:
    """Float ratings [B, N] -> int64 rating ids clamped to 0..num_ratings (0 = none/padding)."""
    if RATINGS_KEY not in past_payloads:
        raise ValueError(f"this preprocessor needs the {RATINGS_KEY!r} payload [B, N]")
    return past_payloads[RATINGS_KEY].round().to(torch.int64).clamp(0, num_ratings)


def _dropout_and_zero_padding(
    dropout: Dropout, x: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, N, D], lengths [B] -> (dropout(x) with rows at or after each length zeroed,
    valid_mask [B, N, 1] float); the zeroing rides in the dropout's multiply."""
    mask = jagged.valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    return dropout(x, keep=mask), mask


class LearnablePositionalEmbeddingInputFeaturesPreprocessor(nn.Module):
    """item_embedding * sqrt(D) + position_embedding, dropout, padding rows zeroed.

    Parameters: a [max_sequence_len, D] positional table (truncated normal, std sqrt(1/D)).
    """

    tokens_per_event = 1

    def __init__(self, max_sequence_len: int, embedding_dim: int, dropout_rate: float) -> None:
        super().__init__()
        self.max_sequence_len = max_sequence_len
        self.embedding_dim = embedding_dim
        self.dropout_rate = dropout_rate
        self.pos_emb = nn.Embedding(max_sequence_len, embedding_dim)
        self.dropout = Dropout(p=dropout_rate)
        _init_positional(self.pos_emb, embedding_dim)

    def forward(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (lengths [B], user_embeddings [B, N, D], valid_mask [B, N, 1])."""
        if positions is None:
            positions = _default_positions(past_ids)
        x = past_embeddings * math.sqrt(self.embedding_dim) + self.pos_emb(positions)
        return past_lengths, *_dropout_and_zero_padding(self.dropout, x, past_lengths)

    def debug_str(self) -> str:
        return f"posi-d{self.dropout_rate}"


class LearnablePositionalEmbeddingRatedInputFeaturesPreprocessor(nn.Module):
    """concat(item_embedding, rating_embedding) * sqrt(D') + position_embedding, dropout.

    D' = item_embedding_dim + rating_embedding_dim. Ratings (payload "ratings", [B, N] float) are
    rounded to ints 0..num_ratings and looked up in a [num_ratings + 1, rating_embedding_dim] table.
    """

    tokens_per_event = 1

    def __init__(
        self,
        max_sequence_len: int,
        item_embedding_dim: int,
        dropout_rate: float,
        rating_embedding_dim: int,
        num_ratings: int,
    ) -> None:
        super().__init__()
        self.max_sequence_len = max_sequence_len
        self.embedding_dim = item_embedding_dim + rating_embedding_dim
        self.dropout_rate = dropout_rate
        self.num_ratings = num_ratings
        self.pos_emb = nn.Embedding(max_sequence_len, self.embedding_dim)
        self.rating_emb = nn.Embedding(num_ratings + 1, rating_embedding_dim)
        self.dropout = Dropout(p=dropout_rate)
        _init_positional(self.pos_emb, self.embedding_dim)
        _init_positional(self.rating_emb, self.embedding_dim)

    def forward(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (lengths [B], user_embeddings [B, N, D'], valid_mask [B, N, 1])."""
        if positions is None:
            positions = _default_positions(past_ids)
        ratings = self.rating_emb(_rating_ids(past_payloads, self.num_ratings))
        x = torch.cat([past_embeddings, ratings], dim=-1) * math.sqrt(self.embedding_dim)
        x = x + self.pos_emb(positions)
        return past_lengths, *_dropout_and_zero_padding(self.dropout, x, past_lengths)

    def debug_str(self) -> str:
        return f"posir-d{self.dropout_rate}"


class CombinedItemAndRatingInputFeaturesPreprocessor(nn.Module):
    """Items and ratings as interleaved tokens: item_0, rating_0, item_1, rating_1, ...

    Output length doubles (N' = 2N, lengths' = 2 * lengths). Token t gets
    ``token_embedding * sqrt(D) + position_embedding[t]`` from a [2 * max_sequence_len, D] table;
    ratings use a [num_ratings + 1, D] table.
    """

    tokens_per_event = 2

    def __init__(
        self, max_sequence_len: int, item_embedding_dim: int, dropout_rate: float, num_ratings: int
    ) -> None:
        super().__init__()
        self.max_sequence_len = max_sequence_len
        self.embedding_dim = item_embedding_dim
        self.dropout_rate = dropout_rate
        self.num_ratings = num_ratings
        self.pos_emb = nn.Embedding(2 * max_sequence_len, item_embedding_dim)
        self.rating_emb = nn.Embedding(num_ratings + 1, item_embedding_dim)
        self.dropout = Dropout(p=dropout_rate)
        _init_positional(self.pos_emb, item_embedding_dim)
        _init_positional(self.rating_emb, item_embedding_dim)

    def forward(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (2 * lengths [B], user_embeddings [B, 2N, D], valid_mask [B, 2N, 1])."""
        B, N = past_ids.shape
        D = self.embedding_dim
        if positions is None:
            positions = _default_positions(past_ids)
        token_positions = torch.stack([2 * positions, 2 * positions + 1], dim=2).reshape(B, 2 * N)
        ratings = self.rating_emb(_rating_ids(past_payloads, self.num_ratings))
        tokens = torch.stack([past_embeddings, ratings], dim=2).reshape(B, 2 * N, D)
        x = tokens * math.sqrt(D) + self.pos_emb(token_positions)
        lengths = 2 * past_lengths
        return lengths, *_dropout_and_zero_padding(self.dropout, x, lengths)

    def debug_str(self) -> str:
        return f"combir-d{self.dropout_rate}"

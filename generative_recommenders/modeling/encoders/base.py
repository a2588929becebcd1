"""What SASRec and HSTU share: item embeddings, similarity, preprocessing and the encoder API."""

from __future__ import annotations

import torch
from torch import nn


class SequentialEncoder(nn.Module):
    """Base of the sequential encoders.

    Subclasses implement ``_encode_all(past_lengths, past_ids, past_embeddings, past_payloads)
    -> (lengths' [B], states [B, N', D])`` with states already output-postprocessed and zero on
    padding rows; ``N' = N`` unless the preprocessor interleaves several tokens per event.
    """

    def __init__(
        self,
        embedding_module: nn.Module,
        similarity_module: nn.Module,
        input_features_preproc_module: nn.Module,
        output_postproc_module: nn.Module,
    ) -> None:
        super().__init__()
        self.embedding_module = embedding_module
        self.similarity = similarity_module
        self.input_preproc = input_features_preproc_module
        self.output_postproc = output_postproc_module

    @property
    def item_embedding_dim(self) -> int:
        return int(self.embedding_module.item_embedding_dim)

    def get_item_embeddings(self, item_ids: torch.Tensor) -> torch.Tensor:
        """[*] int64 -> [*, D]."""
        return self.embedding_module.get_item_embeddings(item_ids)

    def interaction(
        self,
        query_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor,
        user_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The similarity module's forward: [B, D] x ([B, R, D] | [X, D]) -> scores, aux losses."""
        return self.similarity(query_embeddings, item_embeddings, user_ids)

    def _encode_all(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """lengths [B], ids [B, N] int64, embeddings [B, N, D], payloads -> states [B, N', D]."""
        return self._encode_all(past_lengths, past_ids, past_embeddings, past_payloads)[1]

    def encode(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> torch.Tensor:
        """-> [B, D], the state after each user's last valid event (zero for an empty history)."""
        lengths, states = self._encode_all(past_lengths, past_ids, past_embeddings, past_payloads)
        return gather_last(states, lengths)


def gather_last(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """states [B, N, D], lengths [B] -> [B, D] rows at lengths - 1 (row 0, i.e. zeros, if 0)."""
    index = (lengths.to(torch.int64) - 1).clamp(min=0)
    picked = states[torch.arange(states.shape[0], device=states.device), index]
    return picked * (lengths > 0).unsqueeze(-1).to(picked.dtype)

"""What SASRec and HSTU share: item embeddings, similarity, preprocessing and the encoder API.

Attention direction: a causal encoder (``causal=True``, the default) lets position t see positions
0..t; a bidirectional one (``causal=False``, for the masked objective) lets every position see
every non-padding position of its row, i.e. every position whose id is not 0. Masked positions
carry the id :data:`MASK_ID` and the learned :attr:`SequentialEncoder.mask_embedding` as their
embedding (their item is hidden from the encoder).
"""

from __future__ import annotations

import torch
from torch import nn

from generative_recommenders.ops.attention import AttentionMask

MASK_ID = -1  # the id written at masked positions (never 0, so the position counts as a key)


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
        causal: bool = True,
    ) -> None:
        super().__init__()
        self.embedding_module = embedding_module
        self.similarity = similarity_module
        self.input_preproc = input_features_preproc_module
        self.output_postproc = output_postproc_module
        self.causal = bool(causal)
        # The learned mask token [D] of a bidirectional encoder (truncated normal, std 0.02, as
        # the item table); None for a causal one, so causal checkpoints are unchanged.
        self.mask_embedding: nn.Parameter | None = None
        if not self.causal:
            dim = int(embedding_module.item_embedding_dim)
            self.mask_embedding = nn.Parameter(
                nn.init.trunc_normal_(torch.empty(dim), std=0.02, a=-0.04, b=0.04)
            )

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

    def attention_mask(self, ids: torch.Tensor) -> AttentionMask:
        """ids [b, w] of one padded group -> the mask its attention uses: causal [1, w, w], or
        bidirectional [b, w, w] (key j allowed where ``ids[:, j] != 0``; each position may also
        see itself, so a padding row never has zero keys)."""
        width = ids.shape[1]
        if self.causal:
            return AttentionMask.causal(width, ids.device)
        keys = (ids != 0).unsqueeze(1)  # [b, 1, w]
        itself = torch.eye(width, dtype=torch.bool, device=ids.device).unsqueeze(0)
        return AttentionMask(keys | itself)

    def direction_str(self) -> str:
        """Run-name suffix: empty for a causal encoder, ``-bidir`` otherwise."""
        return "" if self.causal else "-bidir"

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

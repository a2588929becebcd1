"""SASRec (Kang & McAuley, arXiv 1808.09781): causal self-attention blocks with a point-wise FFN."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from generative_recommenders.modeling.encoders.base import SequentialEncoder

FFN_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}
LAYER_NORM_EPS = 1e-8


class SASRecBlock(nn.Module):
    """One block on [B, N, D]: LN(q) -> causal MHA(q, x, x) + LN(q) -> LN -> FFN + residual.

    Queries are layer-normed, keys/values are the raw block input (as in SASRec). Parameters:
    MHA 4D^2 + 4D, two layer norms 4D, FFN 2*D*F + F + D.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        ffn_hidden_dim: int,
        ffn_activation_fn: str,
        ffn_dropout_rate: float,
    ) -> None:
        super().__init__()
        if ffn_activation_fn not in FFN_ACTIVATIONS:
            raise ValueError(
                f"ffn_activation_fn={ffn_activation_fn!r}; expected one of {sorted(FFN_ACTIVATIONS)}"
            )
        self.attention_norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)
        self.attention = nn.MultiheadAttention(
            embedding_dim, num_heads, dropout=ffn_dropout_rate, batch_first=True
        )
        self.ffn_norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)
        self.ffn = nn.Sequential(
            nn.Linear(embedding_dim, ffn_hidden_dim),
            FFN_ACTIVATIONS[ffn_activation_fn](),
            nn.Dropout(ffn_dropout_rate),
            nn.Linear(ffn_hidden_dim, embedding_dim),
            nn.Dropout(ffn_dropout_rate),
        )

    def forward(
        self, x: torch.Tensor, causal_mask: torch.Tensor, valid_mask: torch.Tensor
    ) -> torch.Tensor:
        """x [B, N, D], causal_mask [N, N] bool (True = blocked), valid_mask [B, N, 1] -> [B, N, D]."""
        q = self.attention_norm(x)
        attended, _ = self.attention(q, x, x, attn_mask=causal_mask, need_weights=False)
        x = self.ffn_norm(q + attended)
        x = x + self.ffn(x)
        return x * valid_mask


class SASRec(SequentialEncoder):
    """SASRec encoder: preprocessor -> num_blocks SASRecBlocks -> LayerNorm -> postprocessor.

    Padding rows are zeroed after every block and in the output. ``max_sequence_len`` and
    ``max_output_len`` are recorded for the run name and sizing only; the positional table lives in
    the preprocessor.
    """

    def __init__(
        self,
        max_sequence_len: int,
        max_output_len: int,
        embedding_dim: int,
        num_blocks: int,
        num_heads: int,
        ffn_hidden_dim: int,
        ffn_activation_fn: str,
        ffn_dropout_rate: float,
        embedding_module: nn.Module,
        similarity_module: nn.Module,
        input_features_preproc_module: nn.Module,
        output_postproc_module: nn.Module,
        activation_checkpoint: bool = False,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            embedding_module,
            similarity_module,
            input_features_preproc_module,
            output_postproc_module,
        )
        self.max_sequence_len = max_sequence_len
        self.max_output_len = max_output_len
        self.embedding_dim = embedding_dim
        self.num_blocks = num_blocks
        self.num_heads = num_heads
        self.ffn_hidden_dim = ffn_hidden_dim
        self.ffn_activation_fn = ffn_activation_fn
        self.ffn_dropout_rate = ffn_dropout_rate
        self.activation_checkpoint = activation_checkpoint
        self.verbose = verbose
        self.blocks = nn.ModuleList(
            SASRecBlock(
                embedding_dim, num_heads, ffn_hidden_dim, ffn_activation_fn, ffn_dropout_rate
            )
            for _ in range(num_blocks)
        )
        self.last_norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS)

    def _encode_all(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lengths, x, valid_mask = self.input_preproc(
            past_lengths, past_ids, past_embeddings, past_payloads
        )
        n = x.shape[1]
        causal_mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(diagonal=1)
        for block in self.blocks:
            if self.activation_checkpoint and self.training:
                x = checkpoint(block, x, causal_mask, valid_mask, use_reentrant=False)
            else:
                x = block(x, causal_mask, valid_mask)
        return lengths, self.output_postproc(self.last_norm(x)) * valid_mask

    def debug_str(self) -> str:
        return (
            f"SASRec-b{self.num_blocks}-h{self.num_heads}-dffn{self.ffn_hidden_dim}"
            f"-{self.ffn_activation_fn}-ddr{self.ffn_dropout_rate}"
        )

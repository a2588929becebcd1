"""SASRec (Kang & McAuley, arXiv 1808.09781): causal self-attention blocks with a point-wise FFN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from generative_recommenders.modeling.encoders.base import SequentialEncoder
from generative_recommenders.ops.attention import AttentionMask, softmax_attention
from generative_recommenders.ops.dropout import Dropout
from generative_recommenders.ops.groups import check_group_size, length_groups, to_groups, ungroup
from generative_recommenders.registry import ENCODERS

FFN_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU}
LAYER_NORM_EPS = 1e-8


class SASRecBlock(nn.Module):
    """One block on [B, N, D]: LN(q) -> causal MHA(q, x, x) + LN(q) -> LN -> FFN + residual.

    Queries are layer-normed, keys/values are the raw block input (as in SASRec). The layer norms
    have no learned parameters (as in the paper's public SASRec). Parameters: MHA 4D^2 + 4D,
    FFN 2*D*F + F + D; weight matrices start Xavier-normal, biases as PyTorch initialises them.
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
        self.attention_norm = nn.LayerNorm(
            embedding_dim, eps=LAYER_NORM_EPS, elementwise_affine=False
        )
        self.attention = nn.MultiheadAttention(
            embedding_dim, num_heads, dropout=ffn_dropout_rate, batch_first=True
        )
        self.ffn_norm = nn.LayerNorm(embedding_dim, eps=LAYER_NORM_EPS, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(embedding_dim, ffn_hidden_dim),
            FFN_ACTIVATIONS[ffn_activation_fn](),
            Dropout(ffn_dropout_rate),
            nn.Linear(ffn_hidden_dim, embedding_dim),
            Dropout(ffn_dropout_rate),
        )
        for parameter in self.parameters():
            if parameter.dim() >= 2:
                nn.init.xavier_normal_(parameter)

    def forward(self, x: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """x [B, N, D], mask [1, N, N] -> [B, N, D]. Padding rows are not zeroed here (see
        :class:`SASRec`)."""
        q = self.attention_norm(x)
        x = self.ffn_norm(q + self.attend(q, x, mask))
        return x + self.ffn(x)

    def attend(self, q: torch.Tensor, x: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """``self.attention(q, x, x, attn_mask=mask)`` written out with its parameters:
        W_o softmax((q W_q / sqrt(d)) (x W_k)^T) (x W_v), per head, masked, dropout on the
        weights. q, x [B, N, D] -> [B, N, D]. The kernel is
        :func:`generative_recommenders.ops.attention.softmax_attention`."""
        mha = self.attention
        scale = (mha.embed_dim // mha.num_heads) ** -0.5
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        qh = F.linear(q, w_q * scale, b_q * scale)
        kh, vh = F.linear(x, w_k, b_k), F.linear(x, w_v, b_v)
        out = softmax_attention(qh, kh, vh, mask, mha.num_heads, mha.dropout, self.training)
        return mha.out_proj(out)


@ENCODERS.register("SASRec", gin_name="sasrec_encoder")
class SASRec(SequentialEncoder):
    """SASRec encoder: preprocessor -> num_blocks SASRecBlocks -> postprocessor.

    ``causal=False`` removes the causal mask (every position sees its row's non-padding
    positions): with the masked objective this is BERT4Rec's encoder.

    Padding rows are zeroed in the input and the output only. Between blocks they would be
    multiplied by zero for nothing: histories are left-aligned, so a valid position attends only
    to earlier, valid positions, and padding rows never reach a valid row in either direction
    (their logits are -inf, their softmax weights exactly 0, and their output gradients 0), which
    keeps the valid rows and all parameter gradients bit for bit as with the per-block zeroing.
    ``max_sequence_len`` and ``max_output_len`` are recorded for the run name and sizing only; the
    positional table lives in the preprocessor.
    """

    def __init__(
        self,
        max_sequence_len: int,
        max_output_len: int,
        embedding_dim: int,
        embedding_module: nn.Module,
        similarity_module: nn.Module,
        input_features_preproc_module: nn.Module,
        output_postproc_module: nn.Module,
        num_blocks: int = 2,
        num_heads: int = 1,
        ffn_hidden_dim: int = 64,
        ffn_activation_fn: str = "relu",
        ffn_dropout_rate: float = 0.2,
        activation_checkpoint: bool = False,
        verbose: bool = False,
        attention_group_size: int = 16,
        causal: bool = True,
    ) -> None:
        super().__init__(
            embedding_module,
            similarity_module,
            input_features_preproc_module,
            output_postproc_module,
            causal,
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
        self.attention_group_size = check_group_size(attention_group_size)
        self.blocks = nn.ModuleList(
            SASRecBlock(
                embedding_dim, num_heads, ffn_hidden_dim, ffn_activation_fn, ffn_dropout_rate
            )
            for _ in range(num_blocks)
        )

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
        groups = length_groups(past_lengths, self.attention_group_size)
        hs = to_groups(x, groups)
        if self.causal:
            masks = [AttentionMask.causal(h.shape[1], h.device) for h in hs]
        else:
            masks = [self.attention_mask(ids) for ids in to_groups(past_ids, groups)]
        outputs = [
            self.output_postproc(self._run_blocks(h, attention)) * mask
            for h, attention, mask in zip(hs, masks, to_groups(valid_mask, groups), strict=True)
        ]  # post-processed per group: ~sum(lengths) rows instead of B * N
        return lengths, ungroup(outputs, groups.order, x.shape[1])

    def _run_blocks(self, x: torch.Tensor, mask: AttentionMask) -> torch.Tensor:
        """x [b, w, D] -> [b, w, D] after every block (padding rows not zeroed)."""
        for block in self.blocks:
            if self.activation_checkpoint and self.training:
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return x

    def debug_str(self) -> str:
        return (
            f"SASRec-b{self.num_blocks}-h{self.num_heads}-dffn{self.ffn_hidden_dim}"
            f"-{self.ffn_activation_fn}-ddr{self.ffn_dropout_rate}{self.direction_str()}"
        )

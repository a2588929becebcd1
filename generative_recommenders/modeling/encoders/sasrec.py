"""SASRec (Kang & McAuley, arXiv 1808.09781): causal self-attention blocks with a point-wise FFN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from generative_recommenders.modeling.encoders.base import (
    SequentialEncoder,
    check_group_size,
    length_groups,
    to_groups,
    ungroup,
)
from generative_recommenders.ops.dropout import Dropout, dropout
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

    def forward(self, x: torch.Tensor, causal_bias: torch.Tensor) -> torch.Tensor:
        """x [B, N, D], causal_bias [N, N] (:func:`causal_bias`) -> [B, N, D].

        Padding rows are not zeroed here (see :class:`SASRec`)."""
        q = self.attention_norm(x)
        x = self.ffn_norm(q + self.attend(q, x, causal_bias))
        return x + self.ffn(x)

    def attend(self, q: torch.Tensor, x: torch.Tensor, causal_bias: torch.Tensor) -> torch.Tensor:
        """``self.attention(q, x, x, attn_mask=causal_bias)`` written out with its parameters.

        q, x [B, N, D], causal_bias [N, N] additive (0 or -inf) -> [B, N, D]. Written out so the
        attention dropout is the cheap :func:`generative_recommenders.ops.dropout.dropout`, and
        the mask is added inside the scores' GEMM (``baddbmm``: exactly ``masked_fill`` with -inf,
        as x + 0 = x and x + -inf = -inf, without another pass over [B, N, N]).
        :func:`attend_reference` (the ``nn.MultiheadAttention`` call) is what tests compare it with.
        """
        mha = self.attention
        B, N, D = q.shape
        H = mha.num_heads
        hd = D // H
        w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        qh = F.linear(q, w_q * (hd**-0.5), b_q * (hd**-0.5))
        kh = F.linear(x, w_k, b_k)
        vh = F.linear(x, w_v, b_v)
        if H > 1:
            qh, kh, vh = (t.view(B, N, H, hd).transpose(1, 2).reshape(B * H, N, hd)
                          for t in (qh, kh, vh))  # fmt: skip
        scores = torch.baddbmm(causal_bias.expand(qh.shape[0], N, N), qh, kh.transpose(1, 2))
        weights = dropout(torch.softmax(scores, dim=-1), mha.dropout, self.training)
        out = torch.bmm(weights, vh)
        if H > 1:
            out = out.view(B, H, N, hd).transpose(1, 2).reshape(B, N, D)
        return mha.out_proj(out)


def attend_reference(
    block: SASRecBlock, q: torch.Tensor, x: torch.Tensor, causal_bias: torch.Tensor
) -> torch.Tensor:
    """The plain ``nn.MultiheadAttention`` call that :meth:`SASRecBlock.attend` replaces."""
    return block.attention(q, x, x, attn_mask=causal_bias, need_weights=False)[0]


def causal_bias(width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[width, width] additive attention mask: 0 on and below the diagonal, -inf above it."""
    blocked = torch.ones(width, width, dtype=torch.bool, device=device).triu(diagonal=1)
    return torch.zeros(width, width, device=device, dtype=dtype).masked_fill_(blocked, -torch.inf)


@ENCODERS.register("SASRec", gin_name="sasrec_encoder")
class SASRec(SequentialEncoder):
    """SASRec encoder: preprocessor -> num_blocks SASRecBlocks -> postprocessor.

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
        outputs = [
            self.output_postproc(self._run_blocks(h)) * mask
            for h, mask in zip(to_groups(x, groups), to_groups(valid_mask, groups), strict=True)
        ]  # post-processed per group: ~sum(lengths) rows instead of B * N
        return lengths, ungroup(outputs, groups.order, x.shape[1])

    def _run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """x [b, w, D] -> [b, w, D] after every block (padding rows not zeroed)."""
        bias = causal_bias(x.shape[1], x.device, x.dtype)
        for block in self.blocks:
            if self.activation_checkpoint and self.training:
                x = checkpoint(block, x, bias, use_reentrant=False)
            else:
                x = block(x, bias)
        return x

    def debug_str(self) -> str:
        return (
            f"SASRec-b{self.num_blocks}-h{self.num_heads}-dffn{self.ffn_hidden_dim}"
            f"-{self.ffn_activation_fn}-ddr{self.ffn_dropout_rate}"
        )

"""A GRU4Rec-style recurrent encoder, registered from outside the package.

The item embeddings (plus the shared positional embeddings and dropout of the preprocessor) run
through a stack of GRUs; the state at position t has seen positions 0..t only, so the encoder is
causal by construction and trains under the same autoregressive objective as SASRec and HSTU.

Train it with ``python main.py --gin_config_file=examples/custom_encoder.gin``; the gin file's
``import examples.custom_encoder`` line registers it as ``train_fn.main_module = "GRU4Rec"``. The run
offers the shared parts (item table, similarity, pre- and postprocessor, ``embedding_dim``);
``num_layers`` and ``dropout_rate`` are bound as ``GRU4Rec.num_layers`` / ``GRU4Rec.dropout_rate``.
"""

from __future__ import annotations

import torch
from torch import nn

from generative_recommenders.modeling.encoders.base import SequentialEncoder
from generative_recommenders.registry import ENCODERS


@ENCODERS.register("GRU4Rec")
class GRU4Rec(SequentialEncoder):
    """preprocessor -> GRU x num_layers -> postprocessor; padding rows zeroed.

    Args:
        embedding_dim: D, the item embedding size (the GRU's input and hidden size).
        embedding_module, similarity_module, input_features_preproc_module,
            output_postproc_module: the shared parts the run builds (see SequentialEncoder).
        num_layers: stacked GRU layers.
        dropout_rate: dropout between GRU layers (needs num_layers > 1 to act).
    """

    def __init__(
        self,
        embedding_dim: int,
        embedding_module: nn.Module,
        similarity_module: nn.Module,
        input_features_preproc_module: nn.Module,
        output_postproc_module: nn.Module,
        num_layers: int = 1,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__(
            embedding_module,
            similarity_module,
            input_features_preproc_module,
            output_postproc_module,
        )
        self.num_layers = int(num_layers)
        self.dropout_rate = float(dropout_rate)
        self.gru = nn.GRU(
            embedding_dim,
            embedding_dim,
            num_layers=self.num_layers,
            batch_first=True,
            dropout=self.dropout_rate if self.num_layers > 1 else 0.0,
        )

    def _encode_all(
        self,
        past_lengths: torch.Tensor,
        past_ids: torch.Tensor,
        past_embeddings: torch.Tensor,
        past_payloads: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """lengths [B], ids [B, N], embeddings [B, N, D] -> (lengths [B], states [B, N, D])."""
        lengths, x, valid_mask = self.input_preproc(
            past_lengths, past_ids, past_embeddings, past_payloads
        )  # x [B, N, D], valid_mask [B, N, 1]
        states, _ = self.gru(x)  # left-aligned histories: padding comes after the valid rows
        return lengths, self.output_postproc(states) * valid_mask

    def debug_str(self) -> str:
        """The run-name part: every setting that changes the model."""
        return f"GRU4Rec-l{self.num_layers}-d{self.dropout_rate:g}"

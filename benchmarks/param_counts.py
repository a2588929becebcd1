"""Print the parameter counts of the paper's ML-1M SASRec, HSTU and HSTU-large settings.

Usage: python benchmarks/param_counts.py
(max item id 3,952, item embedding dim 50, max sequence length 200, gr_output_length 10).
"""

from __future__ import annotations

import pathlib
import sys

import gin
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from generative_recommenders.config.modeling import ModelSettings, build_encoder  # noqa: E402

ML1M_SETTINGS: dict[str, tuple[str, str]] = {
    "SASRec": (
        "SASRec",
        """
        sasrec_encoder.num_blocks = 2
        sasrec_encoder.num_heads = 1
        sasrec_encoder.ffn_dropout_rate = 0.2
        sasrec_encoder.ffn_hidden_dim = 50
        sasrec_encoder.ffn_activation_fn = "relu"
        """,
    ),
    "HSTU": (
        "HSTU",
        """
        hstu_encoder.num_blocks = 2
        hstu_encoder.num_heads = 1
        hstu_encoder.dv = 50
        hstu_encoder.dqk = 50
        hstu_encoder.linear_dropout_rate = 0.2
        """,
    ),
    "HSTU-large": (
        "HSTU",
        """
        hstu_encoder.num_blocks = 8
        hstu_encoder.num_heads = 2
        hstu_encoder.dv = 25
        hstu_encoder.dqk = 25
        hstu_encoder.linear_dropout_rate = 0.2
        """,
    ),
}


def build_ml1m(name: str) -> torch.nn.Module:
    """The encoder of one ML-1M setting (gin bindings parsed, then cleared)."""
    main_module, bindings = ML1M_SETTINGS[name]
    gin.clear_config()
    gin.parse_config(bindings)
    try:
        settings = ModelSettings(
            main_module=main_module,
            gr_output_length=10,
            item_embedding_dim=50,
            dropout_rate=0.2,
            user_embedding_norm="l2_norm",
            l2_norm_eps=1e-6,
            interaction_module_type="DotProduct",
            embedding_module_type="local",
        )
        return build_encoder(settings, max_item_id=3952, max_sequence_length=200, used=set())
    finally:
        gin.clear_config()


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def main() -> None:
    for name in ML1M_SETTINGS:
        model = build_ml1m(name)
        total = count_parameters(model)
        table = count_parameters(model.embedding_module)
        print(
            f"{name:11s} {total:>9,d} parameters ({table:,d} item table, {total - table:,d} other)"
        )


if __name__ == "__main__":
    main()

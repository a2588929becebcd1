"""Tiny model builders and batches shared by the modeling tests."""

from __future__ import annotations

import torch

from generative_recommenders.modeling.embeddings import LocalEmbeddingModule
from generative_recommenders.modeling.encoders.hstu import HSTU
from generative_recommenders.modeling.encoders.sasrec import SASRec
from generative_recommenders.modeling.postprocessors import L2NormEmbeddingPostprocessor
from generative_recommenders.modeling.preprocessors import (
    LearnablePositionalEmbeddingInputFeaturesPreprocessor,
)
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity

NUM_ITEMS, DIM, MAX_LEN, OUT_LEN = 30, 8, 12, 3


def _parts(dropout: float = 0.0):
    return dict(
        embedding_module=LocalEmbeddingModule(NUM_ITEMS, DIM),
        similarity_module=DotProductSimilarity(),
        input_features_preproc_module=LearnablePositionalEmbeddingInputFeaturesPreprocessor(
            MAX_LEN + OUT_LEN, DIM, dropout
        ),
        output_postproc_module=L2NormEmbeddingPostprocessor(DIM),
    )


def build_hstu(normalization: str = "rel_bias", dropout: float = 0.0, **kwargs) -> HSTU:
    args = dict(
        max_sequence_len=MAX_LEN,
        max_output_len=OUT_LEN,
        embedding_dim=DIM,
        num_blocks=2,
        num_heads=2,
        dqk=4,
        dv=3,
        linear_dropout_rate=dropout,
        attn_dropout_rate=dropout,
        normalization=normalization,
    )
    args.update(kwargs)
    return HSTU(**args, **_parts(dropout))


def build_sasrec(dropout: float = 0.0, **kwargs) -> SASRec:
    return SASRec(
        max_sequence_len=MAX_LEN,
        max_output_len=OUT_LEN,
        embedding_dim=DIM,
        num_blocks=2,
        num_heads=2,
        ffn_hidden_dim=16,
        ffn_activation_fn="relu",
        ffn_dropout_rate=dropout,
        **kwargs,
        **_parts(dropout),
    )


def random_batch(lengths: list[int], width: int, seed: int = 0):
    """ids [B, width] (0 after each length), timestamps increasing, query time at index length."""
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    ids = torch.randint(1, NUM_ITEMS + 1, (len(lengths), width), generator=g)
    ids[torch.arange(width).unsqueeze(0) >= lengths_t.unsqueeze(1)] = 0
    gaps = torch.randint(1, 200_000, (len(lengths), width), generator=g)
    ts = 1_600_000_000 + torch.cumsum(gaps, dim=1)
    ts[torch.arange(width).unsqueeze(0) > lengths_t.unsqueeze(1)] = 0
    return lengths_t, ids, {"timestamps": ts}


def run(model, lengths, ids, payloads):
    return model(lengths, ids, model.get_item_embeddings(ids), payloads)

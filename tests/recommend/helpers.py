"""An independent brute-force ranking to check the recommender against."""

from __future__ import annotations

import numpy as np
import torch

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.training.inputs import encoder_inputs


@torch.no_grad()
def query_like_evaluation(
    encoder, items, timestamps, max_len: int, query_time: int
) -> torch.Tensor:
    """One history -> [D], padded to max_len like the evaluation loader pads windows."""
    window = np.array(items[-max_len:], dtype=np.int64)
    times = np.array(timestamps[-max_len:], dtype=np.int64)
    n = len(window)
    ids = torch.zeros(1, max_len, dtype=torch.int64)
    ts = torch.zeros(1, max_len, dtype=torch.int64)
    ids[0, :n] = torch.as_tensor(window)
    ts[0, :n] = torch.as_tensor(times)
    one = torch.zeros(1, dtype=torch.int64)
    batch = SequenceBatch(
        rows=one,
        user_ids=one,
        ids=ids,
        lengths=torch.tensor([n]),
        timestamps=ts,
        ratings=torch.zeros(1, max_len),
        target_ids=one,
        target_timestamps=torch.tensor([query_time]),
        target_ratings=torch.zeros(1),
    )
    inputs = encoder_inputs(batch, write_target_id=False)
    return encoder.encode(
        past_lengths=inputs.lengths,
        past_ids=inputs.ids,
        past_embeddings=encoder.get_item_embeddings(inputs.ids),
        past_payloads=inputs.payloads,
    )[0]


@torch.no_grad()
def brute_force(encoder, query, catalogue, item_l2_norm: bool, banned, k: int):
    """Score every catalogue item with the similarity's forward, drop banned, sort -> (codes, scores)."""
    items = encoder.get_item_embeddings(torch.as_tensor(catalogue))
    if item_l2_norm:
        items = items / items.norm(dim=-1, keepdim=True).clamp(min=1e-6)
    scores, _ = encoder.similarity(query.view(1, -1), items)
    scores = scores[0].numpy().astype(np.float64)
    keep = ~np.isin(catalogue, np.asarray(list(banned), dtype=np.int64))
    codes, scores = np.asarray(catalogue)[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[:k]
    return codes[order], scores[order]

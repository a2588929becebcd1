"""From a :class:`SequenceBatch` to the encoder's inputs.

The histories are widened by one column so position ``length`` always exists: training writes the
target id there (so every valid position is supervised by the next item, the target included), and
both training and evaluation write the target's timestamp there, which HSTU's relative time bias uses
as the query time. The encoder treats position ``length`` as padding either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.modeling.encoders.base import gather_last


@dataclass
class EncoderInputs:
    """lengths [B]; ids, timestamps [B, N + 1] int64; ratings [B, N + 1] float32; user_ids [B]."""

    lengths: torch.Tensor
    ids: torch.Tensor
    timestamps: torch.Tensor
    ratings: torch.Tensor
    user_ids: torch.Tensor

    @property
    def payloads(self) -> dict[str, torch.Tensor]:
        return {"timestamps": self.timestamps, "ratings": self.ratings}


def _widen(values: torch.Tensor) -> torch.Tensor:
    return torch.cat([values, values.new_zeros(values.shape[0], 1)], dim=1)


def encoder_inputs(batch: SequenceBatch, write_target_id: bool) -> EncoderInputs:
    """Build [B, N + 1] inputs; ``write_target_id`` for training (autoregressive supervision)."""
    at_length = batch.lengths.view(-1, 1)
    ids = _widen(batch.ids)
    if write_target_id:
        ids.scatter_(1, at_length, batch.target_ids.view(-1, 1))
    timestamps = _widen(batch.timestamps)
    timestamps.scatter_(1, at_length, batch.target_timestamps.view(-1, 1))
    return EncoderInputs(
        lengths=batch.lengths,
        ids=ids,
        timestamps=timestamps,
        ratings=_widen(batch.ratings),
        user_ids=batch.user_ids,
    )


def encode_queries(
    encoder: nn.Module, batch: SequenceBatch, traceable: bool = False
) -> torch.Tensor:
    """The one query-encoding path (evaluation, ``Recommender`` and the exported artefact).

    ``batch.ids`` [B, N] (oldest first, left-aligned), ``lengths`` [B], ``timestamps`` [B, N],
    ``ratings`` [B, N] and ``target_timestamps`` [B] (the query time, written at index ``length``)
    -> [B, D] float32: the encoder's state after each history's last event.

    ``traceable``: run every row over the full width and gather at ``length`` (the encoders are
    causal, so the state at ``length - 1`` does not depend on later columns); one traced program then
    serves every length. Otherwise only the valid positions are computed (faster).
    """
    inputs = encoder_inputs(batch, write_target_id=False)
    embeddings = encoder.get_item_embeddings(inputs.ids)
    if not traceable:
        return encoder.encode(
            past_lengths=inputs.lengths,
            past_ids=inputs.ids,
            past_embeddings=embeddings,
            past_payloads=inputs.payloads,
        ).float()
    states = encoder(
        past_lengths=torch.full_like(inputs.lengths, inputs.ids.shape[1]),
        past_ids=inputs.ids,
        past_embeddings=embeddings,
        past_payloads=inputs.payloads,
    )  # [B, N + 1, D]
    return gather_last(states, inputs.lengths).float()

"""From a :class:`SequenceBatch` to the encoder's inputs.

The histories are widened by one column so position ``length`` always exists: training writes the
target id there (so every valid position is supervised by the next item, the target included), and
both training and evaluation write the target's timestamp there, which HSTU's relative time bias uses
as the query time. A causal encoder treats position ``length`` as padding either way.

A bidirectional encoder (the masked objective) is queried with a mask token at position ``length``:
:func:`encode_queries` writes :data:`MASK_ID` and the encoder's ``mask_embedding`` there and reads
the state at ``length``. For such an encoder the timestamps after each row's last event repeat that
event's time (:func:`fill_after`), so the last event's "next" time (HSTU's query time) is its own,
whatever the padded width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.modeling.encoders.base import MASK_ID, gather_last


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


def fill_after(values: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """values [B, W], last [B] int64 -> [B, W] with every column after ``last`` equal to
    ``values[:, last]`` (tensor ops only, so it traces)."""
    columns = torch.arange(values.shape[1], device=values.device).unsqueeze(0)
    return values.gather(1, torch.minimum(columns, last.view(-1, 1)))


@dataclass
class MaskedInputs:
    """What a bidirectional encoder reads when positions are masked: ids [B, W] (``MASK_ID``
    where masked), embeddings [B, W, D] (``mask_embedding`` where masked), payloads (ratings 0
    where masked; timestamps after each row's last event repeating it, :func:`fill_after`)."""

    ids: torch.Tensor
    embeddings: torch.Tensor
    payloads: dict[str, torch.Tensor]


def mask_inputs(
    encoder: nn.Module, inputs: EncoderInputs, embeddings: torch.Tensor, masked: torch.Tensor
) -> MaskedInputs:
    """inputs [B, W] whose last event is at ``inputs.lengths`` (the target in training, the
    appended query slot at evaluation), their item-table rows embeddings [B, W, D], masked
    [B, W] bool -> the encoder's inputs with those positions hidden (the masked objective's and
    the query's one path)."""
    token = encoder.mask_embedding.to(embeddings.dtype)
    return MaskedInputs(
        ids=inputs.ids.masked_fill(masked, MASK_ID),
        embeddings=torch.where(masked.unsqueeze(-1), token, embeddings),
        payloads={
            "timestamps": fill_after(inputs.timestamps, inputs.lengths),
            "ratings": inputs.ratings.masked_fill(masked, 0.0),
        },
    )


def _encode_masked_queries(encoder: nn.Module, inputs: EncoderInputs, traceable: bool):
    """Bidirectional encoder: a mask token at ``length``, its state is the query [B, D]."""
    lengths = inputs.lengths
    width = inputs.ids.shape[1]
    at_length = torch.arange(width, device=lengths.device).unsqueeze(0) == lengths.view(-1, 1)
    hidden = mask_inputs(encoder, inputs, encoder.get_item_embeddings(inputs.ids), at_length)
    ids, embeddings, payloads = hidden.ids, hidden.embeddings, hidden.payloads
    if not traceable:
        return encoder.encode(
            past_lengths=lengths + 1,
            past_ids=ids,
            past_embeddings=embeddings,
            past_payloads=payloads,
        ).float()
    # Full width for every row (constant host values); the mask reads ids, so padding (id 0)
    # is never a key, and the state at ``length`` is picked with tensor ops.
    states = encoder(
        past_lengths=torch.full_like(lengths, width),
        past_ids=ids,
        past_embeddings=embeddings,
        past_payloads=payloads,
    )
    return gather_last(states, lengths + 1).float()


def encode_queries(
    encoder: nn.Module, batch: SequenceBatch, traceable: bool = False
) -> torch.Tensor:
    """The one query-encoding path (evaluation, ``Recommender`` and the exported artefact).

    ``batch.ids`` [B, N] (oldest first, left-aligned), ``lengths`` [B], ``timestamps`` [B, N],
    ``ratings`` [B, N] and ``target_timestamps`` [B] (the query time, written at index ``length``)
    -> [B, D] float32: the encoder's state after each history's last event.

    ``traceable``: run every row over the full width and gather at ``length`` (a causal encoder's
    state at ``length - 1`` does not depend on later columns; a bidirectional one never attends to
    padding ids); one traced program then serves every length. Otherwise only the valid positions
    are computed (faster). A bidirectional encoder (``encoder.causal`` False) is queried with a mask
    token appended at ``length`` (see the module docstring).
    """
    inputs = encoder_inputs(batch, write_target_id=False)
    if not getattr(encoder, "causal", True):
        return _encode_masked_queries(encoder, inputs, traceable)
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

"""Sampled losses over a positive and R sampled negatives per position (op ``"sampled_losses"``).

``sampled_losses(rows, row_loss)`` -> (losses [L], auxiliary losses): for each of the L supervised
positions, with query q_l, positive x_l+ and negatives x_l1 .. x_lR (slots into the sampler's
candidate table; an accidental hit is a negative whose id equals the positive's):

    logits_l = [s(q_l, x_l+), s(q_l, x_l1), ..., s(q_l, x_lR)] / T        s = the similarity
             + [0, o_l1, ..., o_lR]        (optional per-slot offsets, e.g. -log q for logQ)
    loss_l   = row_loss(logits_l, hits_l)

``row_loss`` is the loss's formula, e.g. :func:`softmax_row_loss` =
``logsumexp(logits with hits at -inf) - logits[0]``.

- reference: gather the ``[L, 1 + R, D]`` candidates, one similarity call, the mask by ids, the row
  loss; with ``checkpoint_chunk`` the same per chunk of positions under activation
  checkpointing. Works for any similarity.
- ``fused`` (CPU), when the similarity is a dot product (``similarity.dot_product``): never
  materialises ``[L, R, D]``. Independent negatives: 1 / T on the [L, D] queries, the negatives'
  logits from :func:`~generative_recommenders.ops.sampled_dot.sampled_dot_logits` against the
  candidate table, chunked; for :func:`softmax_row_loss` with one slot per candidate id, logits,
  hit mask and logsumexp in one op
  (:func:`~generative_recommenders.ops.sampled_dot.sampled_softmax_losses`). Shared negatives
  (``groups``): the shared embeddings gathered once, ``[G, R, D]``, scored with one GEMM (one
  group) or one bmm over the padded queries (one group per batch row). Other similarities take
  the reference. With per-slot offsets (``SampledRows.slot_offsets``, the logQ correction) the
  independent path takes its generic branch (negatives' logits, offsets added, hit mask, row
  loss) instead of the one-op sampled softmax; without them nothing changes.

:func:`mask_hits` (op ``"mask_hits"``) sets the negatives' logits at accidental hits to -inf: the
reference is a dense ``masked_fill``; ``fused`` (CPU) writes the few hits (about R / U of the
draws) with one sparse ``index_put`` (``masked_fill``/``where`` over [L, R] cost ~1 ns per element
on CPU, and as much again in backward).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from generative_recommenders.ops import kernels
from generative_recommenders.ops.sampled_dot import sampled_dot_logits, sampled_softmax_losses

OP, MASK_HITS = "sampled_losses", "mask_hits"
RowLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class SampledRows:
    """The L supervised positions of a step and their sampled negatives.

    queries [L, D]; positives [L, D] (normalised like the negatives); positive_ids [L] int64;
    slots [L, R] int64 into the sampler's candidate table, or [G, R] shared by groups of positions
    with ``groups`` [L] (each position's row of ``slots``); sampler: ``candidate_table()`` [U, D]
    (optionally ``unnormalized_candidate_table()``: its rows before the L2 normalisation and the
    eps, so the fused op normalises without an autograd copy of the table),
    ``candidate_ids()`` [U], ``candidate_slots(ids)`` ([L] or None), ``make_lookup(n)``;
    similarity: ``(queries [c, D], items [c, K, D], user_ids) -> (scores [c, K], aux)``, with
    ``dot_product`` True when its score is exactly <q, x>; user_ids [L] or None;
    padded_queries [B, N, D] and rows [L] (flat indices into B * N) the queries before the
    jagged reduction; temperature T; checkpoint_chunk: positions per activation-checkpointed
    chunk (None: one pass without checkpointing); slot_offsets: [U] float added to each
    negative's logit after the division by T (the positive's logit is unchanged), looked up by
    slot; None for none. The loss's logQ correction passes ``-log q`` per slot here.
    """

    queries: torch.Tensor
    positives: torch.Tensor
    positive_ids: torch.Tensor
    slots: torch.Tensor
    groups: torch.Tensor | None
    sampler: Any
    similarity: Any
    user_ids: torch.Tensor | None
    padded_queries: torch.Tensor
    rows: torch.Tensor
    temperature: float
    checkpoint_chunk: int | None = None
    slot_offsets: torch.Tensor | None = None


def lookup_ids(ids: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
    """ids [U], slots [*, R] int64 -> ids[slots] (index_select: advanced indexing is slower)."""
    return ids.index_select(0, slots.reshape(-1)).view(slots.shape)


def offset_negatives(
    logits: torch.Tensor, slot_offsets: torch.Tensor, slots: torch.Tensor
) -> torch.Tensor:
    """logits [c, 1 + R] (column 0 the positive), slot_offsets [U], slots [c, R] ->
    ``logits + [0, slot_offsets[slots]]``: only the negatives' columns move."""
    offsets = lookup_ids(slot_offsets, slots).to(logits.dtype)  # [c, R]
    return logits + F.pad(offsets, (1, 0))


def mask_hits_reference(logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """logits [c, 1 + R] (column 0 the positive), hits [c, R] -> negatives at hits set to -inf."""
    return logits.masked_fill(F.pad(hits, (1, 0)), float("-inf"))


def _mask_hits_fused(logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    rows, cols = hits.nonzero(as_tuple=True)
    return logits.index_put((rows, cols + 1), logits.new_full((), float("-inf")))


kernels.define(MASK_HITS, mask_hits_reference)
kernels.register(MASK_HITS, "fused", _mask_hits_fused, devices=("cpu",))


def mask_hits(logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """logits [c, 1 + R], hits [c, R] bool -> a new [c, 1 + R] with -inf at the hits' columns."""
    return kernels.resolve(MASK_HITS, logits.device)(logits, hits)


def softmax_row_loss(logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    """Sampled softmax: ``-log softmax(logits with hits at -inf)[0]`` -> [c]."""
    return torch.logsumexp(mask_hits(logits, hits), dim=1) - logits[:, 0]


def _formula(
    rows: SampledRows, row_loss: RowLoss, start: int, end: int, lookup: Callable
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Positions start..end-1 by the formula (slots already [L, R])."""
    slots = rows.slots[start:end]
    candidates = torch.cat([rows.positives[start:end].unsqueeze(1), lookup(slots)], dim=1)
    user_ids = None if rows.user_ids is None else rows.user_ids[start:end]
    logits, aux = rows.similarity(rows.queries[start:end], candidates, user_ids)  # [c, 1 + R]
    logits = logits / rows.temperature
    if rows.slot_offsets is not None:
        logits = offset_negatives(logits, rows.slot_offsets, slots)
    hits = lookup_ids(rows.sampler.candidate_ids(), slots) == rows.positive_ids[start:end, None]
    return row_loss(logits, hits), aux


def sampled_losses_reference(
    rows: SampledRows, row_loss: RowLoss
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The formula of the module doc, per checkpointed chunk when ``rows.checkpoint_chunk``."""
    if rows.groups is not None:  # every position gets its group's slots
        rows = _replace_slots(rows, rows.slots.index_select(0, rows.groups))
    num_rows = rows.queries.shape[0]
    lookup = rows.sampler.make_lookup(rows.slots.numel())
    chunk = rows.checkpoint_chunk or num_rows
    losses, aux_total = [], {}
    for start in range(0, num_rows, chunk):
        end = min(start + chunk, num_rows)
        if rows.checkpoint_chunk:
            chunk_losses, aux = checkpoint(
                _formula, rows, row_loss, start, end, lookup, use_reentrant=False
            )
        else:
            chunk_losses, aux = _formula(rows, row_loss, start, end, lookup)
        losses.append(chunk_losses)
        for name, value in aux.items():  # averaged over positions
            aux_total[name] = aux_total.get(name, 0.0) + value * ((end - start) / num_rows)
    return (losses[0] if len(losses) == 1 else torch.cat(losses)), aux_total


def _replace_slots(rows: SampledRows, slots: torch.Tensor) -> SampledRows:
    return SampledRows(**{**rows.__dict__, "slots": slots, "groups": None})


def _sampled_losses_fused(
    rows: SampledRows, row_loss: RowLoss
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    if not getattr(rows.similarity, "dot_product", False):
        return sampled_losses_reference(rows, row_loss)
    if rows.groups is None:
        return _independent_dot_losses(rows, row_loss), {}
    sampler, slots = rows.sampler, rows.slots
    negatives = sampler.make_lookup(slots.numel())(slots)  # [G, R, D]
    logits = _shared_dot_logits(
        rows.queries, rows.positives, rows.padded_queries, rows.rows, negatives
    )
    logits = logits / rows.temperature
    if rows.slot_offsets is not None:  # each position's group's slots [L, R]
        logits = offset_negatives(logits, rows.slot_offsets, slots.index_select(0, rows.groups))
    negative_ids = lookup_ids(sampler.candidate_ids(), slots)  # [G, R]
    hits = negative_ids.index_select(0, rows.groups) == rows.positive_ids.unsqueeze(1)  # [L, R]
    return row_loss(logits, hits), {}


def _independent_dot_losses(rows: SampledRows, row_loss: RowLoss) -> torch.Tensor:
    """Own negatives per position: 1 / T on the [L, D] queries, not on the [L, 1 + R] logits."""
    sampler = rows.sampler
    queries = rows.queries * (1.0 / rows.temperature)
    # The rows before normalisation, normalised inside the op (a sampler without the method
    # hands its final table).
    unnormalized = getattr(sampler, "unnormalized_candidate_table", None)
    table, eps = unnormalized() if unnormalized else (sampler.candidate_table(), None)
    table = table.to(queries.dtype)  # [U, D]
    if row_loss is softmax_row_loss and rows.slot_offsets is None:
        positive_slots = sampler.candidate_slots(rows.positive_ids)
        if positive_slots is not None:  # each id has one slot: hits masked by slot in the op
            positive_logits = (queries * rows.positives).sum(dim=-1)  # [L]
            return sampled_softmax_losses(
                queries, table, positive_logits, rows.slots, positive_slots, normalize_eps=eps
            )
    positive_logits = (queries * rows.positives).sum(dim=-1, keepdim=True)  # [L, 1]
    negative_logits = sampled_dot_logits(queries, table, rows.slots, normalize_eps=eps)
    logits = torch.cat([positive_logits, negative_logits], dim=1)
    if rows.slot_offsets is not None:
        logits = offset_negatives(logits, rows.slot_offsets, rows.slots)
    hits = lookup_ids(sampler.candidate_ids(), rows.slots) == rows.positive_ids.unsqueeze(1)
    return row_loss(logits, hits)


def _shared_dot_logits(
    queries: torch.Tensor,
    positives: torch.Tensor,
    padded_queries: torch.Tensor,
    rows: torch.Tensor,
    negatives: torch.Tensor,
) -> torch.Tensor:
    """Logits [L, 1 + R] (not / temperature) against shared negatives [1, R, D] (one GEMM) or
    [B, R, D] (one per batch row: a bmm over the padded queries [B, N, D], then the rows)."""
    negatives = negatives.to(queries.dtype)
    positive_logits = (queries * positives).sum(dim=-1, keepdim=True)  # [L, 1]
    if negatives.shape[0] == 1:
        negative_logits = queries @ negatives[0].t()  # [L, R]
    else:
        scores = torch.bmm(padded_queries, negatives.transpose(1, 2))  # [B, N, R]
        negative_logits = scores.reshape(-1, scores.shape[-1]).index_select(0, rows)  # [L, R]
    return torch.cat([positive_logits, negative_logits], dim=1)


kernels.define(OP, sampled_losses_reference)
kernels.register(OP, "fused", _sampled_losses_fused, devices=("cpu",))


def sampled_losses(
    rows: SampledRows, row_loss: RowLoss
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-position losses [L] and the similarity's auxiliary losses (averaged over positions)."""
    return kernels.resolve(OP, rows.queries.device)(rows, row_loss)

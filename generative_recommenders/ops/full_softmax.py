"""Cross-entropy over the whole catalogue (op ``"full_softmax_losses"``).

``full_softmax_losses(rows)`` -> (losses [L], auxiliary losses): for each of the L supervised
positions, with query q_l, positive x_l+ and the catalogue's items x (all X of them, the positive
among them):

    loss_l = logsumexp_{x in catalogue}(s(q_l, x) / T) - s(q_l, x_l+) / T        s = the similarity

The positive's logit comes from the similarity's ``forward`` (``[L, 1, D]`` candidates, the same
call the sampled losses make, which also gives its auxiliary losses); the catalogue's logits from
``score_prepared(prepare_queries(q), prepare_items(x))``.

- reference: all ``[L, X]`` logits at once, ``torch.logsumexp`` over them.
- ``chunked`` (cpu, cuda; plain torch): the logsumexp over blocks of at most ``chunk_positions``
  positions x ``chunk_items`` items, so no tensor of ``[L, X]`` exists and the memory kept for
  backward does not grow with catalogue x positions:

  - dot-product similarity (``similarity.dot_product``): one autograd function keeps only the
    queries (/ T), the items and the logsumexp [L]; its backward recomputes each block's softmax
    ``p = exp(q x^T - lse)`` and accumulates ``grad_q += (g p) x`` and ``grad_x += (g p)^T q``
    block by block;
  - other similarities (MoL): queries and items prepared once (O(L) and O(X) memory), each block's
    ``logsumexp(score_prepared(...))`` under activation checkpointing (recomputed in backward),
    the blocks combined with ``logaddexp``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from generative_recommenders.ops import kernels

OP = "full_softmax_losses"


@dataclass
class CatalogueRows:
    """The L supervised positions of a step and the catalogue they are scored against.

    queries [L, D]; positives [L, D] (normalised like the items); items [X, D] the catalogue's
    embeddings (normalised); similarity: the contract of ``modeling/similarity/base.py``;
    user_ids [L] or None; temperature T; chunk_positions x chunk_items: the largest block of
    logits the ``chunked`` backend holds at once.
    """

    queries: torch.Tensor
    positives: torch.Tensor
    items: torch.Tensor
    similarity: Any
    user_ids: torch.Tensor | None
    temperature: float
    chunk_positions: int = 1024
    chunk_items: int = 1024


def _positive_logits(rows: CatalogueRows) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """s(q_l, x_l+) / T [L] and the similarity's auxiliary losses."""
    logits, aux = rows.similarity(rows.queries, rows.positives.unsqueeze(1), rows.user_ids)
    return logits[:, 0] / rows.temperature, aux


def full_softmax_losses_reference(
    rows: CatalogueRows,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The formula of the module doc with all [L, X] logits."""
    similarity = rows.similarity
    logits = similarity.score_prepared(
        similarity.prepare_queries(rows.queries, rows.user_ids),
        similarity.prepare_items(rows.items),
    )  # [L, X]
    positive, aux = _positive_logits(rows)
    return torch.logsumexp(logits / rows.temperature, dim=1) - positive, aux


def _blocks(size: int, chunk: int) -> list[tuple[int, int]]:
    return [(start, min(start + chunk, size)) for start in range(0, size, chunk)]


class _DotLogSumExp(torch.autograd.Function):
    """queries [L, D] (already / T), items [X, D] -> logsumexp(queries @ items^T, dim=1) [L].

    Saves the inputs and the result only; backward recomputes every block's softmax. Every block
    of logits is written into one reused buffer (``torch.mm(..., out=)``) and transformed in
    place: a fresh multi-MiB block per GEMM costs page faults that, on a CPU VM, took about as
    long as the GEMM itself (see ``ops/sampled_dot.py``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        queries: torch.Tensor,
        items: torch.Tensor,
        chunk_positions: int,
        chunk_items: int,
    ) -> torch.Tensor:
        lse = queries.new_empty(queries.shape[0])
        buffer = _Buffer(queries, chunk_positions, chunk_items)
        items_t = items.t()
        for start, end in _blocks(queries.shape[0], chunk_positions):
            block_queries = queries[start:end]
            running = None
            for item_start, item_end in _blocks(items.shape[0], chunk_items):
                logits = buffer.mm(block_queries, items_t[:, item_start:item_end])
                block = _logsumexp_(logits)
                running = block if running is None else torch.logaddexp(running, block)
            lse[start:end] = running
        ctx.save_for_backward(queries, items, lse)
        ctx.chunks = (chunk_positions, chunk_items)
        return lse

    @staticmethod
    def backward(ctx: Any, grad_lse: torch.Tensor) -> tuple[Any, ...]:
        queries, items, lse = ctx.saved_tensors
        chunk_positions, chunk_items = ctx.chunks
        grad_queries = torch.zeros_like(queries) if ctx.needs_input_grad[0] else None
        grad_items = torch.zeros_like(items) if ctx.needs_input_grad[1] else None
        buffer = _Buffer(queries, chunk_positions, chunk_items)
        items_t = items.t()
        for start, end in _blocks(queries.shape[0], chunk_positions):
            block_queries = queries[start:end]
            block_lse = lse[start:end].unsqueeze(1)
            block_grad = grad_lse[start:end].unsqueeze(1)
            for item_start, item_end in _blocks(items.shape[0], chunk_items):
                # d lse_l / d logit_lx = softmax_lx; scaled by the upstream gradient of row l.
                weights = buffer.mm(block_queries, items_t[:, item_start:item_end])
                weights.sub_(block_lse).exp_().mul_(block_grad)
                if grad_queries is not None:
                    grad_queries[start:end].addmm_(weights, items[item_start:item_end])
                if grad_items is not None:
                    grad_items[item_start:item_end].addmm_(weights.t(), block_queries)
        return grad_queries, grad_items, None, None


class _Buffer:
    """One reusable [chunk_positions x chunk_items] block of logits (any smaller block is a
    contiguous view of its first elements)."""

    def __init__(self, like: torch.Tensor, rows: int, cols: int) -> None:
        rows = min(rows, like.shape[0])
        self._flat = like.new_empty(rows * cols)

    def mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a [n, D] @ b [D, m] written into the buffer -> [n, m]."""
        out = self._flat[: a.shape[0] * b.shape[1]].view(a.shape[0], b.shape[1])
        return torch.mm(a, b, out=out)


def _logsumexp_(logits: torch.Tensor) -> torch.Tensor:
    """logsumexp over dim 1 of [n, m] logits, overwriting them -> [n]."""
    peak = logits.amax(dim=1, keepdim=True)
    peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
    return logits.sub_(peak).exp_().sum(dim=1).log_().add_(peak.squeeze(1))


def _block_logsumexp(
    similarity: Any,
    temperature: float,
    num_query_states: int,
    *states: torch.Tensor,
) -> torch.Tensor:
    """logsumexp over one block's prepared scores / T -> [c] (the checkpointed function)."""
    logits = similarity.score_prepared(states[:num_query_states], states[num_query_states:])
    return torch.logsumexp(logits / temperature, dim=1)


def _prepared_logsumexp(rows: CatalogueRows) -> torch.Tensor:
    """Any similarity: blocks of prepared scores under activation checkpointing -> [L]."""
    similarity = rows.similarity
    query_state = similarity.prepare_queries(rows.queries, rows.user_ids)
    item_state = similarity.prepare_items(rows.items)
    parts = []
    for start, end in _blocks(rows.queries.shape[0], rows.chunk_positions):
        block_queries = tuple(state[start:end] for state in query_state)
        running = None
        for item_start, item_end in _blocks(rows.items.shape[0], rows.chunk_items):
            block_items = tuple(state[item_start:item_end] for state in item_state)
            block = checkpoint(
                _block_logsumexp,
                similarity,
                rows.temperature,
                len(block_queries),
                *block_queries,
                *block_items,
                use_reentrant=False,
            )
            running = block if running is None else torch.logaddexp(running, block)
        parts.append(running)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _full_softmax_losses_chunked(
    rows: CatalogueRows,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    if getattr(rows.similarity, "dot_product", False):
        # 1 / T on the [L, D] queries rather than on the [L, X] logits.
        scaled = rows.queries * (1.0 / rows.temperature)
        lse = _DotLogSumExp.apply(
            scaled, rows.items.to(scaled.dtype), rows.chunk_positions, rows.chunk_items
        )
    else:
        lse = _prepared_logsumexp(rows)
    positive, aux = _positive_logits(rows)
    return lse - positive, aux


kernels.define(OP, full_softmax_losses_reference)
kernels.register(OP, "chunked", _full_softmax_losses_chunked, devices=("cpu", "cuda"))


def full_softmax_losses(rows: CatalogueRows) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-position losses [L] and the similarity's auxiliary losses (averaged over positions)."""
    return kernels.resolve(OP, rows.queries.device)(rows)

"""Dot products of queries with their own sampled rows of a table, without ``[L, R, D]`` copies.

``sampled_dot_logits(q, table, slots)[l, r] = <q[l], table[slots[l, r]]>`` for queries [L, D],
a candidate table [U, D] and slots [L, R] int64 in ``0..U-1``. The plain formula gathers an
``[L, R, D]`` tensor (for ML-1M's 12k positions x 128 negatives x 50 dims, ~300 MB per step, and as
much again in backward through an accumulating index_put). Here rows are processed in chunks and one
of two exact strategies is used per call:

- **dense** (small tables, ``U <= DENSE_TABLE_FACTOR * R``): score the chunk against the whole table
  with one GEMM ``[c, D] x [D, U]`` and gather the ``R`` wanted columns; backward scatters the
  gradient into a ``[c, U]`` matrix for one GEMM giving the table's gradient. More FLOPs, but all
  in matrix kernels.
- **sparse**: gather ``[c, R, D]`` rows with ``F.embedding`` and ``bmm``; backward accumulates the
  table gradient with ``index_add_``.

Either way the queries' gradient ``sum_r grad[l, r] table[slots[l, r]]`` is one
``F.embedding_bag(slots, table, per_sample_weights=grad, mode="sum")``: fixed-size bags with
weights, a kernel made for exactly this (2.3 ms for ML-1M's step vs ~8 ms as a GEMM).

:func:`sampled_softmax_losses` goes one step further for the sampled-softmax loss: it writes the
positive's logit and the negatives' into one ``[L, 1 + R]`` buffer, masks accidental hits by slot
(in the dense strategy by writing -inf into the chunk's ``[c, U]`` scores before the gather) and
returns ``logsumexp - positive`` per row; its backward forms the softmax once. That saves the
concatenation, the masked copy, the ``[L, R]`` id lookup and comparison, and their gradients'
copies (~4.5 ms of a ~125 ms ML-1M SASRec step), with bit-identical results.

With ``normalize_eps`` set, both score against the L2-normalised rows ``t / max(|t|, eps)`` of
the table and return the gradient for the raw rows. The normalised table is never an autograd
node with its own saved copies and gradient copies: the sparse strategy scales the gathered
logits by ``1 / max(|t|, eps)`` per row, the dense one (small tables) normalises a temporary
copy. For a 107k x 256 candidate table that is ~0.35 GiB less peak memory per step than
normalising outside (docs/benchmarks.md, scale section).

Both keep at most ``CHUNK_ELEMENTS`` floats of temporaries; the result and gradients equal the
plain formula (:func:`sampled_dot_logits_reference`) up to float rounding (tested). On CPU the
dense strategy's ``[c, U]`` buffers are kept between calls (per thread): a fresh multi-MiB block
per chunk costs page faults that, on a VM, took longer than the GEMM that fills it (the forward of
the ML-1M step went from ~35 ms to ~10 ms).
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

DENSE_TABLE_FACTOR = 32
CHUNK_ELEMENTS = 1 << 20  # floats of temporaries per chunk (4 MiB in fp32)


class _Workspace(threading.local):
    """Per-thread reusable CPU buffers: ``scores`` (any content) and ``zeros`` (all zeros
    between uses; a user that scatters into it must reset what it wrote)."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, name: str, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
        """A [rows, cols] view of the named buffer (CPU), grown as needed; fresh on other devices."""
        if like.device.type != "cpu":
            return like.new_zeros(rows, cols) if name == "zeros" else like.new_empty(rows, cols)
        key = (name, like.dtype)
        buffer = self.buffers.get(key)
        if buffer is None or buffer.numel() < rows * cols:
            buffer = like.new_zeros(rows * cols)
            self.buffers[key] = buffer
        return buffer[: rows * cols].view(rows, cols)

    def discard(self, name: str, like: torch.Tensor) -> None:
        """Forget a buffer whose invariant may be broken (an exception mid-use)."""
        self.buffers.pop((name, like.dtype), None)


_WORKSPACE = _Workspace()


def sampled_dot_logits_reference(
    queries: torch.Tensor, table: torch.Tensor, slots: torch.Tensor
) -> torch.Tensor:
    """The plain formula: queries [L, D], table [U, D], slots [L, R] -> [L, R]."""
    return torch.bmm(table[slots], queries.unsqueeze(-1)).squeeze(-1)


def use_dense(num_rows_table: int, num_to_sample: int) -> bool:
    """The strategy :func:`sampled_dot_logits` picks for a table of U rows and R draws per row."""
    return num_rows_table <= DENSE_TABLE_FACTOR * num_to_sample


def _chunk_rows(table: torch.Tensor, num_samples: int, dense: bool) -> int:
    """Rows per chunk so that a chunk's temporaries ([c, U] dense, [c, R, D] sparse) stay
    within ``CHUNK_ELEMENTS`` floats."""
    width = table.shape[0] if dense else num_samples * table.shape[1]
    return max(1, CHUNK_ELEMENTS // max(1, width))


def _negative_logits_into(
    out: torch.Tensor,
    queries: torch.Tensor,
    table: torch.Tensor,
    slots: torch.Tensor,
    dense: bool,
    excluded_slots: torch.Tensor | None = None,
    row_scale: torch.Tensor | None = None,
) -> None:
    """Writes ``<queries[l], table[slots[l, r]]>`` into ``out`` [L, R] (may be a column slice),
    chunk by chunk, times ``row_scale[slots[l, r]]`` when a row scale [U] is given (sparse only).
    ``excluded_slots`` [L] (a slot, or -1 for none) makes the logit -inf wherever
    ``slots[l, r] == excluded_slots[l]``: in the dense strategy by writing -inf into the chunk's
    [c, U] scores before the gather (c writes instead of a pass over [c, R])."""
    num_rows, num_samples = slots.shape
    step = _chunk_rows(table, num_samples, dense)
    if dense:
        buffer = _WORKSPACE.get("scores", min(step, num_rows), table.shape[0], queries)
    minus_inf = queries.new_full((), float("-inf"))
    for start in range(0, num_rows, step):
        end = min(start + step, num_rows)
        if dense:
            scores = torch.mm(queries[start:end], table.t(), out=buffer[: end - start])
            if excluded_slots is not None:  # rows without one (-1) rewrite column 0 unchanged
                excluded = excluded_slots[start:end].unsqueeze(1)
                column = excluded.clamp(min=0)
                kept = scores.gather(1, column)
                scores.scatter_(1, column, torch.where(excluded >= 0, minus_inf, kept))
            torch.gather(scores, 1, slots[start:end], out=out[start:end])
        else:
            rows = F.embedding(slots[start:end], table)  # [c, R, D]
            logits = torch.bmm(rows, queries[start:end].unsqueeze(-1)).squeeze(-1)
            if row_scale is not None:
                logits.mul_(F.embedding(slots[start:end], row_scale.unsqueeze(1)).squeeze(-1))
            if excluded_slots is not None:
                hits = slots[start:end] == excluded_slots[start:end].unsqueeze(1)
                logits.masked_fill_(hits, minus_inf)
            out[start:end] = logits


def _input_grads(
    queries: torch.Tensor,
    table: torch.Tensor,
    slots: torch.Tensor,
    grad_out: torch.Tensor,
    dense: bool,
    needs: tuple[bool, bool],
    eps: float | None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``sum(grad_out * logits)`` ([L, R], contiguous) for (queries, table), each
    None when ``needs`` says it is not wanted; with ``eps`` the logits scored the rows
    ``t / max(|t|, eps)`` and the table's gradient is the one w.r.t. the raw rows ``t``."""
    rows, row_scale = _scoring(table, eps, dense)  # as in forward (sparse: raw rows + scale)
    grad_q = None
    if needs[0]:
        weights = grad_out
        if row_scale is not None:
            weights = grad_out * F.embedding(slots, row_scale.unsqueeze(1)).squeeze(-1)
        grad_q = F.embedding_bag(slots, rows, per_sample_weights=weights, mode="sum")
    if not needs[1]:
        return grad_q, None
    num_rows, num_samples = slots.shape
    step = _chunk_rows(table, num_samples, dense)
    if dense:  # all zeros; after each chunk only the scattered entries are reset
        scratch = _WORKSPACE.get("zeros", min(step, num_rows), table.shape[0], grad_out)
        try:
            grad_table = _dense_table_grad(queries, slots, grad_out, scratch, step)
        except BaseException:
            _WORKSPACE.discard("zeros", grad_out)
            raise
    else:
        grad_table = torch.zeros_like(table)
        for start in range(0, num_rows, step):
            end = min(start + step, num_rows)
            outer = grad_out[start:end].unsqueeze(-1) * queries[start:end].unsqueeze(1)  # [c, R, D]
            grad_table.index_add_(
                0, slots[start:end].reshape(-1), outer.reshape(-1, table.shape[1])
            )
    if eps is not None:  # w.r.t. the normalised rows so far
        _to_raw_rows_grad_(grad_table, table, eps)
    return grad_q, grad_table


def _scoring(
    table: torch.Tensor, eps: float | None, dense: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(rows to score [U, D], per-row scale [U] or None) for the table's rows ``t`` scored as
    ``t / max(|t|, eps)`` (as given when eps is None). Dense (small U): the normalised table.
    Sparse: the raw table and ``1 / max(|t|, eps)``, applied to the gathered logits, so no
    normalised [U, D] copy exists."""
    if eps is None:
        return table, None
    clamped = torch.linalg.vector_norm(table, dim=-1).clamp_(min=eps)  # [U]
    if dense:
        return table / clamped.unsqueeze(1), None
    return table, clamped.reciprocal_()


def _to_raw_rows_grad_(grad: torch.Tensor, table: torch.Tensor, eps: float) -> torch.Tensor:
    """In place: the gradient [U, D] w.r.t. the normalised rows ``y = t / max(|t|, eps)`` becomes
    the gradient w.r.t. the raw rows ``t``: ``(g - y <y, g>) / |t|`` where ``|t| >= eps``,
    ``g / eps`` where the norm was clamped. Chunked: temporaries stay within ``CHUNK_ELEMENTS``."""
    step = max(1, CHUNK_ELEMENTS // max(1, grad.shape[1]))
    for start in range(0, grad.shape[0], step):
        g, t = grad[start : start + step], table[start : start + step]
        norms = torch.linalg.vector_norm(t, dim=-1, keepdim=True)  # [c, 1]
        clamped = norms.clamp(min=eps)
        y = t / clamped
        along = (y * g).sum(dim=-1, keepdim=True).masked_fill_(norms < eps, 0.0)  # [c, 1]
        g.sub_(y.mul_(along)).div_(clamped)
    return grad


class _SampledDotLogits(torch.autograd.Function):
    @staticmethod
    def forward(ctx, queries, table, slots, dense: bool, eps: float | None):  # noqa: ANN001
        out = queries.new_empty(slots.shape)
        rows, scale = _scoring(table, eps, dense)
        _negative_logits_into(out, queries, rows, slots, dense, row_scale=scale)
        ctx.save_for_backward(queries, table, slots)
        ctx.dense, ctx.eps = dense, eps
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001 (autograd signature)
        queries, table, slots = ctx.saved_tensors
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        grad_q, grad_table = _input_grads(
            queries, table, slots, grad_out.contiguous(), ctx.dense, needs, ctx.eps
        )
        return grad_q, grad_table, None, None, None


class _SampledSoftmaxLosses(torch.autograd.Function):
    @staticmethod
    def forward(ctx, queries, table, positive_logits, slots, positive_slots, dense, eps):  # noqa: ANN001
        logits = queries.new_empty(slots.shape[0], 1 + slots.shape[1])  # [L, 1 + R]
        logits[:, 0] = positive_logits
        rows, scale = _scoring(table, eps, dense)
        _negative_logits_into(logits[:, 1:], queries, rows, slots, dense, positive_slots, scale)
        del rows, scale  # recomputed in backward, not kept
        lse = torch.logsumexp(logits, dim=1)  # [L]
        ctx.save_for_backward(queries, table, slots, logits, lse)
        ctx.dense, ctx.eps = dense, eps
        return lse - logits[:, 0]

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001 (autograd signature)
        queries, table, slots, logits, lse = ctx.saved_tensors
        grad = grad.contiguous()
        probabilities = logits.sub(lse.unsqueeze(1)).exp_()  # softmax over [L, 1 + R]
        grad_negatives = torch.mul(probabilities[:, 1:], grad.unsqueeze(1))  # [L, R] contiguous
        grad_positive = probabilities[:, 0] * grad - grad
        needs = (ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        grad_q, grad_table = _input_grads(
            queries, table, slots, grad_negatives, ctx.dense, needs, ctx.eps
        )
        return grad_q, grad_table, grad_positive, None, None, None, None


def _dense_table_grad(
    queries: torch.Tensor,
    slots: torch.Tensor,
    grad_out: torch.Tensor,
    scratch: torch.Tensor,
    step: int,
) -> torch.Tensor:
    """Dense-strategy table gradient [U, D], chunk by chunk through the all-zero ``scratch``
    [c, U]: accumulates ``queries^T @ scattered`` into a [D, U] buffer (this GEMM layout was
    ~30% faster than ``scattered^T @ queries`` into [U, D] at U = 1,682, D = 50, c = 623)."""
    num_rows = slots.shape[0]
    grad_table_t = queries.new_zeros(queries.shape[1], scratch.shape[1])  # [D, U]
    for start in range(0, num_rows, step):
        end = min(start + step, num_rows)
        s = slots[start:end]
        scattered = scratch[: end - start].scatter_add_(1, s, grad_out[start:end])
        grad_table_t.addmm_(queries[start:end].t(), scattered)
        scattered.scatter_(1, s, 0.0)  # back to zeros for the next chunk
    return grad_table_t.t().contiguous()


def sampled_dot_logits(
    queries: torch.Tensor,
    table: torch.Tensor,
    slots: torch.Tensor,
    dense: bool | None = None,
    normalize_eps: float | None = None,
) -> torch.Tensor:
    """queries [L, D], table [U, D], slots [L, R] int64 -> logits [L, R] (differentiable in both).

    ``dense`` forces a strategy (None: :func:`use_dense`). ``normalize_eps``: score against the
    rows ``t / max(|t|, eps)`` (gradient for the raw rows); None scores the rows as given. Inputs
    are made contiguous; the table and queries must share a dtype.
    """
    if slots.dim() != 2 or queries.dim() != 2 or table.dim() != 2:
        raise ValueError("sampled_dot_logits: queries [L, D], table [U, D], slots [L, R] expected")
    if dense is None:
        dense = use_dense(table.shape[0], slots.shape[1])
    return _SampledDotLogits.apply(
        queries.contiguous(), table.contiguous(), slots.contiguous(), bool(dense), normalize_eps
    )


def sampled_softmax_losses(
    queries: torch.Tensor,
    table: torch.Tensor,
    positive_logits: torch.Tensor,
    slots: torch.Tensor,
    positive_slots: torch.Tensor,
    dense: bool | None = None,
    normalize_eps: float | None = None,
) -> torch.Tensor:
    """Per-row sampled-softmax loss ``logsumexp([p_l, n_l1 .. n_lR]) - p_l`` -> [L].

    queries [L, D], table [U, D], positive_logits [L] (``p_l``), slots [L, R] int64,
    positive_slots [L] int64: the positive's slot in the table, or -1. ``n_lr`` is
    ``<queries[l], table[slots[l, r]]>``, or -inf where ``slots[l, r] == positive_slots[l]``
    (an accidental hit). ``normalize_eps`` as in :func:`sampled_dot_logits`. Differentiable in
    queries, table and positive_logits. Equals
    :func:`sampled_dot_logits` + the hit mask + ``logsumexp`` (tested), without the [L, 1 + R]
    concatenation, the masked copy and their gradients' copies.
    """
    if slots.dim() != 2 or positive_slots.shape != slots.shape[:1]:
        raise ValueError("sampled_softmax_losses: slots [L, R] and positive_slots [L] expected")
    if dense is None:
        dense = use_dense(table.shape[0], slots.shape[1])
    return _SampledSoftmaxLosses.apply(
        queries.contiguous(),
        table.contiguous(),
        positive_logits,
        slots.contiguous(),
        positive_slots,
        bool(dense),
        normalize_eps,
    )

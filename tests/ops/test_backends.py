"""Every registered backend of every op equals the op's reference: values and every gradient.

One suite for all of them: a backend added to ``ops.kernels`` is picked up here automatically
(``_cases`` parametrises over ``kernels.backends(op)``). Shapes cover padding, lengths 1 and max,
several heads, bias on and off; random ops (dropout) are compared under the same seed, since the
mask law is part of the op.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from generative_recommenders.ops import kernels
from generative_recommenders.ops.attention import AttentionMask, softmax_attention
from generative_recommenders.ops.dropout import dropout
from generative_recommenders.ops.full_softmax import CatalogueRows, full_softmax_losses
from generative_recommenders.ops.groups import length_groups, to_groups, ungroup
from generative_recommenders.ops.hstu_attention import RelativeIndex, bias_weights, hstu_attention
from generative_recommenders.ops.jagged import (
    dense_to_jagged,
    jagged_to_dense,
    lengths_to_offsets,
    select_rows,
)
from generative_recommenders.ops.sampled_softmax import (
    SampledRows,
    mask_hits,
    sampled_losses,
    softmax_row_loss,
)

OPS = [
    "dropout",
    "to_groups",
    "ungroup",
    "dense_to_jagged",
    "jagged_to_dense",
    "select_rows",
    "softmax_attention",
    "hstu_attention",
    "mask_hits",
    "sampled_losses",
    "full_softmax_losses",
]


def _backend_names(op: str) -> list[str]:
    return list(kernels.backends(op))


def test_every_op_has_a_backend_tested_here_and_registration_is_complete():
    """The suite's list is the registry's: a new op cannot silently go untested."""
    kernels.choices()  # loads every op module
    assert sorted(OPS) == sorted(kernels._REFERENCES)  # noqa: SLF001 (the registry itself)
    assert all(_backend_names(op) for op in OPS if op not in ("dense_to_jagged", "jagged_to_dense"))


def _params(op: str) -> list:
    return [pytest.param(name, id=name) for name in _backend_names(op)]


def _compare(
    op: str,
    backend: str,
    run: Callable[[], tuple[torch.Tensor, list[torch.Tensor]]],
    seed: int = 0,
) -> None:
    """``run()`` -> (output, leaves) under the reference and under ``backend`` (same seed):
    equal outputs and gradients of every leaf for a random upstream gradient."""
    results = []
    for choice in ("reference", backend):
        torch.manual_seed(seed)
        with kernels.using(choice):  # backward too: checkpointed chunks recompute under it
            assert choice == "reference" or kernels.resolve_name(op, "cpu") == backend
            out, leaves = run()
            upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(99))
            grads = torch.autograd.grad(out, leaves, upstream.to(out), allow_unused=True)
        results.append((out.detach(), grads))
    (ref_out, ref_grads), (out, grads) = results
    torch.testing.assert_close(out, ref_out)
    for got, want in zip(grads, ref_grads, strict=True):
        if want is None:
            assert got is None or float(got.abs().sum()) == 0.0
        else:
            torch.testing.assert_close(got, want)
    assert float(ref_out.abs().sum()) > 0


def _leaf(*shape: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=dtype).requires_grad_(True)


def _padded_mask(lengths: list[int], width: int, queries: int | None = None) -> AttentionMask:
    """Causal and padding-aware [B, Nq, Nk]: query i sees keys j <= i below its user's length
    (key 0 at least, as the encoders' padding rows do)."""
    n = torch.arange(width)
    causal = n.view(1, -1) <= n.view(-1, 1)
    valid = n.unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # [B, Nk]
    allowed = causal.unsqueeze(0) & valid.unsqueeze(1)
    allowed[:, :, 0] = True
    if queries is not None:  # the last query of each user: [B, 1, Nk]
        rows = (torch.tensor(lengths) - 1).clamp(min=0)
        allowed = allowed[torch.arange(len(lengths)), rows].unsqueeze(1)
    return AttentionMask(allowed)


# ---- dropout ----


@pytest.mark.parametrize("backend", _params("dropout"))
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
@pytest.mark.parametrize("with_keep", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_dropout(backend, p, with_keep, training):
    keep = (torch.arange(7) % 3 != 0).double().view(7, 1)

    def run():
        x = _leaf(7, 33, seed=1)
        return dropout(x, p, training, keep if with_keep else None), [x]

    if p == 1.0 and training:  # all zeros: compare without the nonzero check
        for choice in ("reference", backend):
            with kernels.using(choice):
                assert float(run()[0].detach().abs().sum()) == 0.0
        return
    _compare("dropout", backend, run, seed=3)


# ---- length groups, jagged conversions ----

LENGTHS = [[3, 9, 1, 5, 9, 1, 7], [1], [9, 9], [0, 4, 1]]


@pytest.mark.parametrize("backend", _params("to_groups"))
@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("group_size", [1, 3, 64])
def test_to_groups(backend, lengths, group_size):
    groups = length_groups(torch.tensor(lengths), group_size)

    def run():
        x = _leaf(len(lengths), 9, 4, seed=2)
        hs = to_groups(x, groups)
        weights = [torch.randn(h.shape, generator=torch.Generator().manual_seed(i)).double()
                   for i, h in enumerate(hs)]  # fmt: skip
        return torch.cat([(h * w).reshape(-1) for h, w in zip(hs, weights, strict=True)]), [x]

    _compare("to_groups", backend, run)


@pytest.mark.parametrize("backend", _params("ungroup"))
@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("group_size", [1, 3, 64])
def test_ungroup(backend, lengths, group_size):
    groups = length_groups(torch.tensor(lengths), group_size)

    def run():
        hs = [_leaf(e - s, w, 4, seed=s) for s, e, w in groups.bounds]
        return ungroup(hs, groups.order, 10), hs

    _compare("ungroup", backend, run)


@pytest.mark.parametrize("backend", _params("dense_to_jagged"))
@pytest.mark.parametrize("lengths", LENGTHS)
def test_dense_to_jagged(backend, lengths):
    offsets = lengths_to_offsets(torch.tensor(lengths))

    def run():
        dense = _leaf(len(lengths), 9, 3, seed=4, dtype=torch.float32)
        return dense_to_jagged(dense, offsets), [dense]

    _compare("dense_to_jagged", backend, run)


@pytest.mark.parametrize("backend", _params("jagged_to_dense"))
@pytest.mark.parametrize("lengths", LENGTHS)
@pytest.mark.parametrize("max_len", [1, 4, 9])
def test_jagged_to_dense(backend, lengths, max_len):
    offsets = lengths_to_offsets(torch.tensor(lengths))

    def run():
        values = _leaf(sum(lengths), 3, seed=5, dtype=torch.float32)
        return jagged_to_dense(values, offsets, max_len, padding_value=-1.0), [values]

    _compare("jagged_to_dense", backend, run)


@pytest.mark.parametrize("backend", _params("select_rows"))
@pytest.mark.parametrize("view", ["contiguous", "drop_last", "drop_first"])
def test_select_rows(backend, view):
    rows = torch.tensor([0, 3, 4, 9, 10, 14])

    def run():
        base = _leaf(3, 6, 4, seed=6)
        x = {"contiguous": base[:, :5].contiguous(), "drop_last": base[:, :-1]}.get(
            view, base[:, 1:]
        )
        return select_rows(x, rows), [base]

    _compare("select_rows", backend, run)


# ---- attention ----


@pytest.mark.parametrize("backend", _params("softmax_attention"))
@pytest.mark.parametrize("heads", [1, 2, 4])
@pytest.mark.parametrize("mask_kind", ["causal", "padded"])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_softmax_attention(backend, heads, mask_kind, dropout_p):
    lengths, width = [1, 6, 3], 6
    mask = AttentionMask.causal(width, "cpu") if mask_kind == "causal" else None
    mask = mask or _padded_mask(lengths, width)

    def run():
        q, k, v = (_leaf(3, width, heads * 2, seed=s) for s in (7, 8, 9))
        return softmax_attention(q, k, v, mask, heads, dropout_p, training=True), [q, k, v]

    _compare("softmax_attention", backend, run, seed=10)


@pytest.mark.parametrize("backend", _params("hstu_attention"))
@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("normalization", ["rel_bias", "softmax_rel_bias"])
@pytest.mark.parametrize("bias_kind", ["none", "positions", "positions+time"])
@pytest.mark.parametrize("mask_kind", ["causal", "padded", "last_query"])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_hstu_attention(backend, heads, normalization, bias_kind, mask_kind, dropout_p):
    lengths, width, num_positions, num_times = [1, 6, 3], 6, 11, 5
    B = len(lengths)
    nq = 1 if mask_kind == "last_query" else width
    if mask_kind == "causal":
        mask = AttentionMask.causal(width, "cpu")
    else:
        mask = _padded_mask(lengths, width, 1 if mask_kind == "last_query" else None)
    gen = torch.Generator().manual_seed(11)
    index = None
    if bias_kind != "none":
        position = torch.randint(0, num_positions, (1, nq, width), generator=gen)
        position[0, 0, :2] = 3  # repeated slots accumulate gradients
        time = None
        if bias_kind == "positions+time":
            time = torch.randint(0, num_times, (B, nq, width), generator=gen)
        index = RelativeIndex(position, time)

    def run():
        q, k = _leaf(B, nq, heads * 3, seed=12), _leaf(B, width, heads * 3, seed=13)
        v = _leaf(B, width, heads * 2, seed=14)
        leaves = [q, k, v]
        weights = None
        if index is not None:
            pos_w, ts_w = _leaf(num_positions, seed=15), _leaf(num_times, seed=16)
            weights = bias_weights(pos_w, ts_w)
            leaves += [pos_w, ts_w]
        out = hstu_attention(
            q, k, v, mask, weights, index, heads, normalization, 9.0, dropout_p, training=True
        )
        return out, leaves

    _compare("hstu_attention", backend, run, seed=17)


# ---- sampled losses ----


def _bce_row_loss(logits: torch.Tensor, hits: torch.Tensor) -> torch.Tensor:
    positive = torch.nn.functional.softplus(-logits[:, 0])
    return positive + torch.nn.functional.softplus(logits[:, 1]).masked_fill(hits[:, 0], 0.0)


class _TableSampler:
    """A candidate table [U, D] with ids; ``unique`` False repeats ids (no slots); with ``eps``
    the candidates are the rows L2-normalised (norms clamped at eps), as the local sampler's."""

    def __init__(
        self, table: torch.Tensor, ids: torch.Tensor, unique: bool, eps: float | None = None
    ) -> None:
        self.raw, self.ids, self.unique, self.eps = table, ids, unique, eps
        norms = torch.linalg.vector_norm(table, dim=-1, keepdim=True)
        self.table = table if eps is None else table / norms.clamp(min=eps)

    def candidate_table(self) -> torch.Tensor:
        return self.table

    def unnormalized_candidate_table(self) -> tuple[torch.Tensor, float | None]:
        return self.raw, self.eps

    def candidate_ids(self) -> torch.Tensor:
        return self.ids

    def candidate_slots(self, ids: torch.Tensor) -> torch.Tensor | None:
        if not self.unique:
            return None
        match = ids.unsqueeze(1) == self.ids.unsqueeze(0)  # [L, U]
        return torch.where(match.any(1), match.long().argmax(1), -1)

    def make_lookup(self, num_draws: int):  # noqa: ANN201
        del num_draws
        return lambda slots: self.table[slots]


class _BilinearSimilarity(torch.nn.Module):
    """score = <W q, x> (not a dot product of the inputs), with an auxiliary loss."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.eye(dim, dtype=torch.float64) + 0.1)

    def forward(self, queries, items, user_ids=None):  # noqa: ANN001, ANN201
        del user_ids
        scores = torch.einsum("cd,ckd->ck", queries @ self.w, items)
        return scores, {"w_norm": (self.w**2).sum()}


class _DotSimilarity(torch.nn.Module):
    dot_product = True

    def forward(self, queries, items, user_ids=None):  # noqa: ANN001, ANN201
        del user_ids
        return torch.einsum("cd,ckd->ck", queries, items), {}


@pytest.mark.parametrize("backend", _params("sampled_losses"))
@pytest.mark.parametrize("loss", ["softmax", "bce"])
@pytest.mark.parametrize("sharing", ["none", "row", "batch"])
@pytest.mark.parametrize("table_kind", ["unique", "repeated", "sparse"])
@pytest.mark.parametrize("similarity_kind", ["dot", "bilinear"])
@pytest.mark.parametrize("chunk", [None, 4])
@pytest.mark.parametrize("offsets", [False, True], ids=["plain", "offsets"])
@pytest.mark.parametrize("l2", [False, True], ids=["raw", "l2"])
def test_sampled_losses(
    backend, loss, sharing, table_kind, similarity_kind, chunk, offsets, l2, monkeypatch
):
    from generative_recommenders.ops import sampled_dot

    if table_kind == "sparse":  # the sparse (gather) strategy of the fused dot product
        monkeypatch.setattr(sampled_dot, "DENSE_TABLE_FACTOR", 0)
    B, N, D, U = 3, 5, 4, 12
    R = 1 if loss == "bce" else 6
    gen = torch.Generator().manual_seed(20)
    weights = (torch.rand(B, N, generator=gen) > 0.3).double()
    weights[0, 0] = weights[2, N - 1] = 1.0  # lengths 1 and max among the supervised rows
    rows = (weights > 0).reshape(-1).nonzero().squeeze(1)
    L = rows.numel()
    ids = torch.arange(1, U + 1) if table_kind != "repeated" else torch.arange(U) % 7 + 1
    positive_ids = torch.randint(1, 9, (L,), generator=gen)
    groups = None
    if sharing == "none":
        slots = torch.randint(0, U, (L, R), generator=gen)
    elif sharing == "row":
        slots, groups = torch.randint(0, U, (B, R), generator=gen), torch.div(rows, N).long()
    else:
        slots, groups = torch.randint(0, U, (1, R), generator=gen), torch.zeros_like(rows)
    slots[0, 0] = int((ids == positive_ids[0]).nonzero()[0, 0])  # an accidental hit
    torch.manual_seed(0)
    similarity = _DotSimilarity() if similarity_kind == "dot" else _BilinearSimilarity(D)
    row_loss = softmax_row_loss if loss == "softmax" else _bce_row_loss
    # Per-slot offsets on the negatives' logits (the logQ correction's -log q).
    slot_offsets = -torch.rand(U, generator=gen, dtype=torch.float64).log() if offsets else None

    def run():
        padded = _leaf(B, N, D, seed=21)
        table = _leaf(U, D, seed=22)
        rows_of = table
        if l2:  # row 1's norm below eps: the clamped branch of the normalisation
            rows_of = (
                table * torch.tensor([1.0, 1e-3] + [1.0] * (U - 2), dtype=table.dtype)[:, None]
            )
        sampler = _TableSampler(
            rows_of, ids, unique=table_kind != "repeated", eps=0.05 if l2 else None
        )
        positives = sampler.table[(positive_ids - 1) % U]
        batch = SampledRows(
            queries=select_rows(padded, rows),
            positives=positives,
            positive_ids=positive_ids,
            slots=slots,
            groups=groups,
            sampler=sampler,
            similarity=similarity,
            user_ids=None,
            padded_queries=padded,
            rows=rows,
            temperature=0.5,
            checkpoint_chunk=chunk,
            slot_offsets=slot_offsets,
        )
        losses, aux = sampled_losses(batch, row_loss)
        extra = [value.reshape(1) for value in aux.values()]
        return torch.cat([losses, *extra]), [padded, table, *similarity.parameters()]

    _compare("sampled_losses", backend, run)


@pytest.mark.parametrize("backend", _params("mask_hits"))
@pytest.mark.parametrize("num_hits", [0, 1, 5])
def test_mask_hits(backend, num_hits):
    hits = torch.zeros(4, 6, dtype=torch.bool)
    hits.view(-1)[torch.randperm(24, generator=torch.Generator().manual_seed(30))[:num_hits]] = 1

    def run():
        logits = _leaf(4, 7, seed=31)
        out = mask_hits(logits, hits)
        return torch.logsumexp(out, dim=1), [logits]  # finite: column 0 is never masked

    _compare("mask_hits", backend, run)


class _PreparedBilinear(torch.nn.Module):
    """score = <W q + u[uid], tanh(x)>: a similarity with prepared states and an auxiliary loss."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.eye(dim, dtype=torch.float64) + 0.1)
        self.u = torch.nn.Parameter(torch.linspace(-1, 1, 3 * dim, dtype=torch.float64).view(3, -1))

    def prepare_queries(self, queries, user_ids=None):  # noqa: ANN001, ANN201
        prepared = queries @ self.w
        return (prepared if user_ids is None else prepared + self.u[user_ids],)

    def prepare_items(self, items):  # noqa: ANN001, ANN201
        return (torch.tanh(items),)

    def score_prepared(self, query_state, item_state):  # noqa: ANN001, ANN201
        return query_state[0] @ item_state[0].t()

    def forward(self, queries, items, user_ids=None):  # noqa: ANN001, ANN201
        (prepared,) = self.prepare_queries(queries, user_ids)
        scores = torch.einsum("cd,ckd->ck", prepared, torch.tanh(items))
        return scores, {"w_norm": (self.w**2).sum()}


class _PreparedDot(_DotSimilarity):
    def prepare_queries(self, queries, user_ids=None):  # noqa: ANN001, ANN201
        return (queries,)

    def prepare_items(self, items):  # noqa: ANN001, ANN201
        return (items,)

    def score_prepared(self, query_state, item_state):  # noqa: ANN001, ANN201
        return query_state[0] @ item_state[0].t()


@pytest.mark.parametrize("backend", _params("full_softmax_losses"))
@pytest.mark.parametrize("similarity_kind", ["dot", "bilinear"])
@pytest.mark.parametrize("chunks", [(1, 1), (3, 4), (64, 64), (5, 100)])
def test_full_softmax_losses(backend, similarity_kind, chunks):
    L, D, X = 7, 4, 11
    gen = torch.Generator().manual_seed(40)
    positive_slots = torch.randint(0, X, (L,), generator=gen)
    positive_slots[0], positive_slots[-1] = 0, X - 1  # the catalogue's first and last items
    user_ids = torch.randint(0, 3, (L,), generator=gen)
    similarity = _PreparedDot() if similarity_kind == "dot" else _PreparedBilinear(D)

    def run():
        queries = _leaf(L, D, seed=41)
        items = _leaf(X, D, seed=42)
        batch = CatalogueRows(
            queries=queries,
            positives=items[positive_slots],
            items=items,
            similarity=similarity,
            user_ids=None if similarity_kind == "dot" else user_ids,
            temperature=0.5,
            chunk_positions=chunks[0],
            chunk_items=chunks[1],
        )
        losses, aux = full_softmax_losses(batch)
        extra = [value.reshape(1) for value in aux.values()]
        return torch.cat([losses, *extra]), [queries, items, *similarity.parameters()]

    _compare("full_softmax_losses", backend, run)

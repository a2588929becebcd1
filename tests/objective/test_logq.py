"""LogQ correction: each negative's logit moves by exactly -log q; positives and hits do not."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from generative_recommenders.modeling.bpr_loss import BPRLoss
from generative_recommenders.modeling.gbce_loss import GBCELoss
from generative_recommenders.modeling.losses import BCELoss, SampledSoftmaxLoss
from generative_recommenders.modeling.mixed_negatives import MixedNegativesSampler
from generative_recommenders.modeling.negatives import (
    InBatchNegativesSampler,
    LocalNegativesSampler,
    NegativesSharing,
)
from generative_recommenders.modeling.popularity_negatives import PopularityNegativesSampler
from generative_recommenders.modeling.similarity.dot_product import DotProductSimilarity
from generative_recommenders.ops import kernels
from generative_recommenders.ops.sampled_softmax import SampledRows, sampled_losses

B, N, D, ITEMS = 3, 6, 4, 10
CATALOGUE = torch.arange(1, ITEMS + 1)
COUNTS = torch.tensor([0, 9, 1, 4, 0, 2, 7, 3, 1, 5, 6], dtype=torch.int64)  # id 4: count 0


def _make_sampler(kind: str, table: nn.Embedding, num: int) -> nn.Module:
    common = {"l2_norm": False, "l2_norm_eps": 1e-6}
    if kind == "in-batch":
        return InBatchNegativesSampler(**common)
    if kind == "in-batch-all":
        return InBatchNegativesSampler(**common, dedup_embeddings=False)
    if kind == "local":
        return LocalNegativesSampler(table, CATALOGUE, **common)
    if kind == "popularity":
        return PopularityNegativesSampler(table, CATALOGUE, **common, item_counts=COUNTS)
    num_in_batch = num // 2 if num > 1 else 1
    catalogue = "popularity" if kind == "mixed-pop" else "uniform"
    return MixedNegativesSampler(
        table,
        CATALOGUE,
        **common,
        num_in_batch=num_in_batch,
        num_catalogue=num - num_in_batch,
        catalogue=catalogue,
        item_counts=COUNTS,
    )


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, ITEMS + 1, (B, N), generator=gen)
    ids[0, 4:] = 0  # padding: those positions are not supervised
    queries = torch.randn(B, N, D, generator=gen, dtype=torch.float64)
    return ids, queries


def _hand_losses(
    loss_kind, queries, positives, positive_ids, slots, sampler, temperature, beta=None
):
    """The formula from the same slots: logits / T, negatives - log q, hits at -inf."""
    table = sampler.candidate_table().detach()
    log_q = sampler.candidate_log_q().double()
    ids = sampler.candidate_ids()
    positive = (queries * positives).sum(-1) / temperature  # [L]
    negatives = torch.einsum("ld,lrd->lr", queries, table[slots]) / temperature - log_q[slots]
    hits = ids[slots] == positive_ids.unsqueeze(1)
    if loss_kind == "bce":
        return F.softplus(-positive) + F.softplus(negatives[:, 0]).masked_fill(hits[:, 0], 0.0)
    if loss_kind == "bpr":
        pairs = F.softplus(negatives - positive.unsqueeze(1)).masked_fill(hits, 0.0)
        return pairs.sum(1) / (~hits).sum(1).clamp(min=1)
    if loss_kind == "gbce":
        return beta * F.softplus(-positive) + F.softplus(negatives).masked_fill(hits, 0.0).sum(1)
    logits = torch.cat([positive.unsqueeze(1), negatives.masked_fill(hits, float("-inf"))], 1)
    return torch.logsumexp(logits, 1) - positive


@pytest.mark.parametrize("backend", ["reference", "fused"])
@pytest.mark.parametrize("loss_kind", ["softmax", "bce", "bpr", "gbce"])
@pytest.mark.parametrize(
    "kind", ["in-batch", "in-batch-all", "local", "popularity", "mixed-uniform", "mixed-pop"]
)
@pytest.mark.parametrize("sharing", [NegativesSharing.NONE, NegativesSharing.ROW])
def test_each_negative_moves_by_exactly_minus_log_q(backend, loss_kind, kind, sharing):
    torch.manual_seed(0)
    table = nn.Embedding(ITEMS + 1, D).double()
    num = 1 if loss_kind == "bce" else 6
    sampler = _make_sampler(kind, table, num).double()
    sampler.generator = torch.Generator().manual_seed(5)
    ids, queries = _inputs()
    flat = ids.reshape(-1)
    sampler.process_batch(flat, flat != 0, table(flat))
    temperature = 0.5 if loss_kind == "softmax" else 1.0
    common = {"temperature": temperature, "negatives_sharing": sharing, "logq_correction": True}
    if loss_kind == "softmax":
        loss = SampledSoftmaxLoss(num_to_sample=num, **common)
    elif loss_kind == "bpr":
        loss = BPRLoss(num_to_sample=num, **common)
    elif loss_kind == "gbce":
        loss = GBCELoss(num_to_sample=num, catalogue_item_ids=CATALOGUE, **common)
    else:
        loss = BCELoss(**common)
    supervision = ids.roll(-1, dims=1).masked_fill(ids == 0, 0)
    supervision[:, -1] = 0
    weights = (supervision != 0).double()
    state = sampler.generator.get_state()
    with kernels.using(backend):
        value, _ = loss(
            torch.full((B,), N),
            queries,
            supervision,
            table(supervision),
            weights,
            sampler,
            DotProductSimilarity(),
        )
    # The same draws again, then the per-position formula by hand.
    sampler.generator.set_state(state)
    rows = (weights > 0).reshape(-1).nonzero().squeeze(1)
    batch_rows = torch.div(rows, N, rounding_mode="floor")
    if sharing is NegativesSharing.NONE:
        slots = sampler.draw_slots(rows.numel(), num, torch.device("cpu"))
    else:
        shared, groups = sampler.draw_shared_slots(sharing, num, batch_rows, B)
        slots = shared[groups]
    positive_ids = supervision.reshape(-1)[rows]
    hand = _hand_losses(
        loss_kind,
        queries.reshape(-1, D)[rows],
        table(positive_ids).detach(),
        positive_ids,
        slots,
        sampler,
        temperature,
        beta=getattr(loss, "beta", None),
    )
    torch.testing.assert_close(value, hand.mean())
    assert "-logq" in loss.debug_str()


def test_the_shift_is_minus_log_q_per_negative_and_the_positive_is_unchanged():
    """Per position through the op: offsets o move each negative's logit by exactly o."""
    gen = torch.Generator().manual_seed(1)
    L, R, U = 5, 4, 7
    queries, table = torch.randn(L, D, generator=gen), torch.randn(U, D, generator=gen)
    positives = torch.randn(L, D, generator=gen)
    slots = torch.randint(0, U, (L, R), generator=gen)
    log_q = torch.log(torch.rand(U, generator=gen))

    class Table:
        def candidate_table(self):
            return table

        def candidate_ids(self):
            return torch.arange(100, 100 + U)  # no id equals a positive: no hits

        def candidate_slots(self, ids):
            return torch.full_like(ids, -1)

        def make_lookup(self, num_draws):
            return lambda s: table[s]

    captured = []

    def row_loss(logits, hits):
        captured.append(logits)
        return logits.sum(1)

    for offsets in (None, -log_q):
        sampled_losses(
            SampledRows(
                queries=queries,
                positives=positives,
                positive_ids=torch.ones(L, dtype=torch.int64),
                slots=slots,
                groups=None,
                sampler=Table(),
                similarity=DotProductSimilarity(),
                user_ids=None,
                padded_queries=queries.unsqueeze(0),
                rows=torch.arange(L),
                temperature=0.25,
                slot_offsets=offsets,
            ),
            row_loss,
        )
    plain, corrected = captured
    torch.testing.assert_close(corrected[:, 0], plain[:, 0])
    torch.testing.assert_close(corrected[:, 1:] - plain[:, 1:], -log_q[slots])


@pytest.mark.parametrize("backend", ["reference", "fused"])
def test_accidental_hits_stay_masked_with_the_correction(backend):
    """Every negative a hit: the loss is exactly 0 (only the positive is left), however large
    the correction would make those logits."""
    table = nn.Embedding(ITEMS + 1, D)
    sampler = LocalNegativesSampler(table, torch.tensor([3]), l2_norm=False, l2_norm_eps=1e-6)
    loss = SampledSoftmaxLoss(num_to_sample=8, logq_correction=True)
    supervision = torch.tensor([[3, 3, 0]])
    with kernels.using(backend):
        value, _ = loss(
            torch.tensor([3]),
            torch.randn(1, 3, D),
            supervision,
            table(supervision),
            (supervision != 0).float(),
            sampler,
            DotProductSimilarity(),
        )
    assert float(value.detach()) == 0.0


def test_debug_str_names_the_correction_only_when_on():
    assert SampledSoftmaxLoss(num_to_sample=4).debug_str() == "ssl-t0.05-n4"
    assert SampledSoftmaxLoss(num_to_sample=4, logq_correction=True).debug_str().endswith("-logq")
    assert BCELoss(logq_correction=True).debug_str() == "bce-t1-logq"
    assert BPRLoss(logq_correction=True).debug_str() == "bpr-t1-n1-logq"
    assert GBCELoss(logq_correction=True).debug_str() == "gbce-t0.75-n128-logq"


def test_in_batch_log_q_is_the_in_batch_frequency():
    ids = torch.tensor([5, 2, 2, 0, 9, 5, 0, 0])
    embeddings = torch.randn(8, 3)
    dedup = InBatchNegativesSampler(l2_norm=False, l2_norm_eps=1e-6)
    dedup.process_batch(ids, ids != 0, embeddings)
    torch.testing.assert_close(dedup.candidate_log_q(), torch.tensor([2 / 5, 2 / 5, 1 / 5]).log())
    every = InBatchNegativesSampler(l2_norm=False, l2_norm_eps=1e-6, dedup_embeddings=False)
    every.process_batch(ids, ids != 0, embeddings)
    expected = {2: 2 / 5, 5: 2 / 5, 9: 1 / 5}
    q = torch.tensor([expected[i] for i in every.candidate_ids().tolist()])
    torch.testing.assert_close(every.candidate_log_q(), q.log())


def test_local_log_q_is_minus_log_catalogue_size():
    sampler = LocalNegativesSampler(
        nn.Embedding(ITEMS + 1, D), CATALOGUE, l2_norm=False, l2_norm_eps=1e-6
    )
    torch.testing.assert_close(
        sampler.candidate_log_q(), torch.full((ITEMS,), -torch.log(torch.tensor(10.0)).item())
    )

"""Optimised HSTU pieces equal their plain formulas in values and gradients (random inputs)."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.modeling.encoders.hstu import HSTUBlock, attend_reference
from generative_recommenders.modeling.encoders.relative_bias import (
    RelativeBucketedTimeAndPositionBias,
    bucketize_time_gaps,
    gather_table,
    next_timestamps,
    relative_bias_indices,
)


def _block(heads: int, normalization: str, with_bias: bool, max_positions: int) -> HSTUBlock:
    torch.manual_seed(0)
    return HSTUBlock(
        embedding_dim=6,
        num_heads=heads,
        dqk=3,
        dv=2,
        linear_dropout_rate=0.0,
        attn_dropout_rate=0.0,
        normalization=normalization,
        linear_activation="silu",
        concat_ua=False,
        relative_bias=(RelativeBucketedTimeAndPositionBias(max_positions) if with_bias else None),
        attention_normalizer=9.0,
    ).double()


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("normalization", ["rel_bias", "softmax_rel_bias"])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("per_user_mask", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_attend_equals_the_plain_formula(heads, normalization, with_bias, per_user_mask, packed):
    """``packed``: the encoder's masked packed index (the fused SiLU path for "rel_bias")."""
    from generative_recommenders.modeling.encoders.relative_bias import pack_bias_index

    B, N = 3, 5
    block = _block(heads, normalization, with_bias, max_positions=N)
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(B, N, heads * 3, generator=gen, dtype=torch.float64)
    k = torch.randn(B, N, heads * 3, generator=gen, dtype=torch.float64)
    v = torch.randn(B, N, heads * 2, generator=gen, dtype=torch.float64)
    ts = torch.randint(0, 10**6, (B, N), generator=gen).sort(dim=1).values
    positions = torch.arange(N).unsqueeze(0)
    bias_index = relative_bias_indices(positions, positions, N, next_timestamps(ts), ts)
    allowed = torch.ones(N, N, dtype=torch.bool).tril().unsqueeze(0)
    if per_user_mask:  # the incremental path's [B, Nq, Nk] mask
        allowed = allowed & (torch.rand(B, N, N, generator=gen) > 0.3)
        allowed[:, :, 0] = True
    upstream = torch.randn(B, N, heads * 2, generator=gen, dtype=torch.float64)
    fast_index = bias_index
    if packed:
        fast_index = pack_bias_index(bias_index[0], bias_index[1], N, allowed)
        assert block._fused(fast_index) == (normalization == "rel_bias" and with_bias)
    results = []
    for fn, index in ((attend_reference, bias_index), (lambda blk, *a: blk.attend(*a), fast_index)):
        block.zero_grad()
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = fn(block, *leaves, index, allowed)
        (out * upstream).sum().backward()
        grads = [t.grad for t in leaves]
        if with_bias:
            grads += [block.relative_bias.ts_w.grad.clone(), block.relative_bias.pos_w.grad.clone()]
        results.append((out.detach(), *grads))
    for plain, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, plain)


def test_gather_table_equals_indexing_with_repeated_indices():
    gen = torch.Generator().manual_seed(2)
    index = torch.randint(0, 7, (4, 5, 5), generator=gen)
    upstream = torch.randn(4, 5, 5, generator=gen, dtype=torch.float64)
    grads = []
    for fn in (lambda w: w[index], lambda w: gather_table(w, index)):
        weights = torch.randn(7, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        weights.requires_grad_(True)
        out = fn(weights)
        (out * upstream).sum().backward()
        grads.append((out.detach(), weights.grad))
    torch.testing.assert_close(grads[1], grads[0])


def test_in_place_bucketing_equals_the_reference_formula():
    gen = torch.Generator().manual_seed(4)
    ts = torch.randint(0, 2**40, (3, 9), generator=gen)
    ts[0, :3] = 5  # zero gaps
    positions = torch.arange(9).unsqueeze(0)
    _, buckets = relative_bias_indices(positions, positions, 9, next_timestamps(ts), ts)
    expected = bucketize_time_gaps(next_timestamps(ts).unsqueeze(2) - ts.unsqueeze(1))
    assert torch.equal(buckets, expected)
    assert int(buckets.max()) > 0


@pytest.mark.parametrize("normalization", ["rel_bias", "softmax_rel_bias"])
def test_length_grouped_attention_equals_one_padded_group(normalization):
    """Users sorted by length, attention per group at its own width: same outputs and gradients."""
    from tests.modeling.model_builders import build_hstu

    results = _outputs_and_grads_per_group_size(
        lambda size: build_hstu(normalization, attention_group_size=size), seed=5
    )
    assert float(results[0][0].abs().sum()) > 0


def _outputs_and_grads_per_group_size(make_model, seed: int) -> list[tuple]:
    """(output, *parameter gradients) of the same seeded model at group sizes 64, 2 and 1,
    checked equal to the one-group run; returned for the caller's own checks."""
    from tests.modeling.model_builders import random_batch, run

    lengths, ids, payloads = random_batch([3, 7, 0, 5, 1, 6], width=8, seed=seed)
    results = []
    for group_size in (64, 2, 1):
        torch.manual_seed(0)
        model = make_model(group_size)
        out = run(model, lengths, ids, payloads)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
        (out * upstream).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((out.detach(), *grads))
    for other in results[1:]:
        for one_group, grouped in zip(results[0], other, strict=True):
            torch.testing.assert_close(grouped, one_group)
    return results


def test_sasrec_length_groups_equal_one_padded_batch():
    from tests.modeling.model_builders import build_sasrec

    def make_model(group_size: int):
        model = build_sasrec()
        model.attention_group_size = group_size
        return model

    results = _outputs_and_grads_per_group_size(make_model, seed=6)
    assert float(results[0][0][1].abs().sum()) > 0


@pytest.mark.parametrize("heads", [1, 2])
def test_sasrec_attention_equals_multihead_attention(heads):
    from generative_recommenders.modeling.encoders.sasrec import SASRecBlock, causal_bias
    from generative_recommenders.modeling.encoders.sasrec import (
        attend_reference as sasrec_reference,
    )

    torch.manual_seed(3)
    block = SASRecBlock(8, heads, 16, "relu", ffn_dropout_rate=0.0).double()
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(3, 6, 8, generator=gen, dtype=torch.float64)
    x = torch.randn(3, 6, 8, generator=gen, dtype=torch.float64)
    causal = torch.ones(6, 6, dtype=torch.bool).triu(diagonal=1)  # the boolean mask for MHA
    upstream = torch.randn(3, 6, 8, generator=gen, dtype=torch.float64)
    results = []
    for fn in (sasrec_reference, lambda blk, *a: blk.attend(*a)):
        block.zero_grad()
        leaves = [t.clone().requires_grad_(True) for t in (q, x)]
        mask = causal if fn is sasrec_reference else causal_bias(6, q.device, q.dtype)
        out = fn(block, *leaves, mask)
        (out * upstream).sum().backward()
        grads = [t.grad for t in leaves] + [p.grad.clone() for p in block.attention.parameters()]
        results.append((out.detach(), *grads))
    for plain, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, plain)


def test_packed_bias_index_gives_the_same_bias_and_gradients():
    from generative_recommenders.modeling.encoders.relative_bias import pack_bias_index

    gen = torch.Generator().manual_seed(8)
    ts = torch.randint(0, 10**7, (2, 6), generator=gen).sort(dim=1).values
    positions = torch.arange(6).unsqueeze(0)
    position_index, buckets = relative_bias_indices(
        positions, positions, 7, next_timestamps(ts), ts
    )
    upstream = torch.randn(2, 6, 6, generator=gen)
    results = []
    for packed in (False, True):
        torch.manual_seed(0)
        module = RelativeBucketedTimeAndPositionBias(7)
        if packed:
            bias = module.packed(pack_bias_index(position_index, buckets, 7))
        else:
            bias = module(position_index, buckets)
        (bias * upstream).sum().backward()
        results.append((bias.detach(), module.ts_w.grad, module.pos_w.grad))
    for plain, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, plain)


@pytest.mark.parametrize("normalization", ["rel_bias", "softmax_rel_bias"])
@pytest.mark.parametrize("group_size", [64, 2])
def test_hstu_encode_with_last_position_only_equals_gather_last_of_forward(
    normalization, group_size
):
    from generative_recommenders.modeling.encoders.base import gather_last
    from tests.modeling.model_builders import build_hstu, random_batch

    lengths, ids, payloads = random_batch([3, 7, 0, 5, 1, 6], width=8, seed=7)
    results = []
    for fast in (False, True):
        torch.manual_seed(0)
        model = build_hstu(normalization, attention_group_size=group_size)
        embeddings = model.get_item_embeddings(ids)
        if fast:
            states = model.encode(lengths, ids, embeddings, payloads)
        else:
            states = gather_last(model(lengths, ids, embeddings, payloads), lengths)
        upstream = torch.randn(states.shape, generator=torch.Generator().manual_seed(9))
        (states * upstream).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        results.append((states.detach(), *grads))
    for plain, fast in zip(*results, strict=True):
        torch.testing.assert_close(fast, plain)
    assert float(results[1][0][2].abs().sum()) == 0.0  # the empty history
    assert float(results[1][0][1].abs().sum()) > 0

"""Model-level equalities: length groups vs one padded batch, encode vs forward, SASRec's written-out
attention vs nn.MultiheadAttention (the ops themselves: tests/ops/test_backends.py)."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.modeling.encoders.relative_bias import (
    bucketize_time_gaps,
    next_timestamps,
    relative_bias_indices,
)
from generative_recommenders.ops import kernels
from generative_recommenders.ops.attention import AttentionMask


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


def sasrec_reference(block, q, x, mask):  # noqa: ANN001, ANN201
    """The plain ``nn.MultiheadAttention`` call that ``SASRecBlock.attend`` writes out."""
    return block.attention(q, x, x, attn_mask=mask, need_weights=False)[0]


@pytest.mark.parametrize("choice", ["auto", "reference"])
@pytest.mark.parametrize("heads", [1, 2])
def test_sasrec_attention_equals_multihead_attention(heads, choice):
    from generative_recommenders.modeling.encoders.sasrec import SASRecBlock

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
        mask = causal if fn is sasrec_reference else AttentionMask.causal(6, q.device)
        with kernels.using(choice):
            out = fn(block, *leaves, mask)
        (out * upstream).sum().backward()
        grads = [t.grad for t in leaves] + [p.grad.clone() for p in block.attention.parameters()]
        results.append((out.detach(), *grads))
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

"""SASRec and HSTU: causality, padding invariance, encode(), determinism."""

import pytest
import torch

from tests.modeling.model_builders import DIM, build_hstu, build_sasrec, random_batch, run

ENCODERS = {
    "sasrec": build_sasrec,
    "hstu-rel_bias": lambda **kw: build_hstu("rel_bias", **kw),
    "hstu-softmax": lambda **kw: build_hstu("softmax_rel_bias", **kw),
    "hstu-concat_ua-no_rab": lambda **kw: build_hstu(
        concat_ua=True, enable_relative_attention_bias=False, linear_activation="none", **kw
    ),
}


@pytest.mark.parametrize("name", ENCODERS)
def test_causality_changing_later_items_leaves_earlier_outputs(name):
    torch.manual_seed(0)
    model = ENCODERS[name]().eval()
    lengths, ids, payloads = random_batch([9, 7], width=10)
    t = 3
    changed = ids.clone()
    changed[:, t + 1 : 9] = (changed[:, t + 1 : 9] % 29) + 1
    changed[1, 7:] = 0
    ts2 = payloads["timestamps"].clone()
    # Position t's time bias uses the time at t + 1 (the next event), so times change from t + 2.
    ts2[:, t + 2 :] += 12345
    a = run(model, lengths, ids, payloads)
    b = run(model, lengths, changed, {"timestamps": ts2})
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])
    assert not torch.allclose(a[0, t + 1 : 9], b[0, t + 1 : 9])


@pytest.mark.parametrize("name", ENCODERS)
def test_padding_and_batchmates_do_not_change_a_users_outputs(name):
    torch.manual_seed(0)
    model = ENCODERS[name]().eval()
    lengths, ids, payloads = random_batch([6, 9, 2], width=10, seed=1)
    together = run(model, lengths, ids, payloads)
    # The same first user alone, with more padding (query time kept at index 6, zeros after).
    wide_ids = torch.zeros(1, 14, dtype=torch.int64)
    wide_ids[0, :10] = ids[0]
    wide_ts = torch.zeros(1, 14, dtype=torch.int64)
    wide_ts[0, :10] = payloads["timestamps"][0]
    alone = run(model, lengths[:1], wide_ids, {"timestamps": wide_ts})
    torch.testing.assert_close(together[0, :6], alone[0, :6])
    assert torch.count_nonzero(together[0, 6:]) == 0 and torch.count_nonzero(alone[0, 6:]) == 0
    assert together.shape == (3, 10, DIM)


@pytest.mark.parametrize("name", ENCODERS)
def test_encode_returns_state_at_last_valid_position(name):
    torch.manual_seed(0)
    model = ENCODERS[name]().eval()
    lengths, ids, payloads = random_batch([5, 1, 0], width=6, seed=2)
    states = model(lengths, ids, model.get_item_embeddings(ids), payloads)
    last = model.encode(lengths, ids, model.get_item_embeddings(ids), payloads)
    torch.testing.assert_close(last[0], states[0, 4])
    torch.testing.assert_close(last[1], states[1, 0])
    assert torch.count_nonzero(last[2]) == 0
    torch.testing.assert_close(last[:2].norm(dim=-1), torch.ones(2))


@pytest.mark.parametrize("name", ["sasrec", "hstu-rel_bias"])
def test_same_seed_gives_same_outputs_with_dropout(name):
    def once():
        torch.manual_seed(7)
        model = ENCODERS[name](dropout=0.3).train()
        lengths, ids, payloads = random_batch([8, 4], width=8, seed=3)
        return run(model, lengths, ids, payloads)

    a, b = once(), once()
    assert torch.equal(a, b)
    torch.manual_seed(8)
    c = run(ENCODERS[name](dropout=0.3).train(), *random_batch([8, 4], width=8, seed=3))
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["sasrec", "hstu-rel_bias"])
def test_activation_checkpointing_gives_same_gradients(name):
    torch.manual_seed(0)
    model = ENCODERS[name]().train()
    lengths, ids, payloads = random_batch([5, 3], width=6)
    run(model, lengths, ids, payloads).sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    model.activation_checkpoint = True
    run(model, lengths, ids, payloads).sum().backward()
    again = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(grads) == len(again) > 0
    for g1, g2 in zip(grads, again, strict=True):
        torch.testing.assert_close(g1, g2)


def test_debug_strings_name_the_architecture():
    assert build_hstu().debug_str() == "HSTU-b2-h2-dqk4-dv3-lsilu-ddr0.0-adr0.0-rel_bias-rab"
    assert build_sasrec().debug_str().startswith("SASRec-b2-h2-dffn16-relu")


@pytest.mark.parametrize(
    "kwargs",
    [{"normalization": "bogus"}, {"linear_config": "uv"}, {"linear_activation": "tanh"}],
)
def test_hstu_rejects_unknown_choices(kwargs):
    with pytest.raises(ValueError, match="expected one of"):
        build_hstu(**kwargs)


def test_sasrec_without_per_block_padding_zeroing_gives_the_same_outputs_and_gradients():
    """SASRec zeroes padding rows only in its input and output; zeroing them after every block
    as well (the reference) must not change any valid output or any parameter's gradient."""
    import copy

    from torch import nn

    class ZeroPaddingAfter(nn.Module):
        def __init__(self, block: nn.Module, mask: torch.Tensor) -> None:
            super().__init__()
            self.block, self.mask = block, mask

        def forward(self, x, causal_bias):
            return self.block(x, causal_bias) * self.mask

    torch.manual_seed(0)
    model = build_sasrec().double()
    model.attention_group_size = 64  # one group: rows sorted by length, width = longest
    lengths, ids, payloads = random_batch([6, 9, 2], width=10, seed=3)
    order = torch.argsort(lengths, descending=True, stable=True)
    mask = (torch.arange(9) < lengths[order].unsqueeze(1)).unsqueeze(-1).double()  # [3, 9, 1]
    reference = copy.deepcopy(model)
    reference.blocks = nn.ModuleList(ZeroPaddingAfter(b, mask) for b in reference.blocks)
    upstream = torch.randn(3, 10, DIM, dtype=torch.float64)
    results = []
    for m in (reference, model):
        outputs = run(m, lengths, ids, payloads)
        (outputs * upstream).sum().backward()
        results.append([outputs.detach()] + [p.grad for p in m.parameters()])
    assert len(results[0]) == len(results[1]) > 5
    for expected, actual in zip(*results, strict=True):
        torch.testing.assert_close(actual, expected)

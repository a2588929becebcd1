"""HSTU: grouped path vs a per-user dense implementation, incremental encoding, time buckets."""

import math

import pytest
import torch
import torch.nn.functional as F

from generative_recommenders.modeling.encoders.relative_bias import (
    RelativeBucketedTimeAndPositionBias,
    bucketize_time_gaps,
    next_timestamps,
    relative_bias_indices,
)
from tests.modeling.model_builders import MAX_LEN, OUT_LEN, build_hstu, random_batch, run


def dense_reference(model, lengths, ids, payloads):
    """The STU written out for one user at a time, straight from the formulas."""
    _, x_all, _ = model.input_preproc(lengths, ids, model.get_item_embeddings(ids), payloads)
    ts_all = payloads["timestamps"]
    B, N, D = x_all.shape
    out = torch.zeros_like(x_all)
    H, dqk, dv = model.num_heads, model.dqk, model.dv
    P = model.max_positions
    for b in range(B):
        L = int(lengths[b])
        x = x_all[b, :L]
        ts = ts_all[b]
        for block in model.blocks:
            h = F.silu(F.layer_norm(x, (D,), eps=1e-6) @ block.uvqk)
            u, v, q, k = torch.split(h, [H * dv, H * dv, H * dqk, H * dqk], dim=-1)
            heads = []
            for head in range(H):
                qh = q[:, head * dqk : (head + 1) * dqk]
                kh = k[:, head * dqk : (head + 1) * dqk]
                vh = v[:, head * dv : (head + 1) * dv]
                s = qh @ kh.T
                bias = torch.zeros(L, L)
                for i in range(L):
                    nxt = ts[i + 1] if i + 1 < N else ts[N - 1]
                    for j in range(L):
                        gap = abs(int(nxt - ts[j]))
                        bucket = min(int(math.log(max(gap, 1)) / 0.301), 128)
                        bias[i, j] = (
                            block.relative_bias.ts_w[bucket]
                            + block.relative_bias.pos_w[j - i + P - 1]
                        )
                s = s + bias
                causal = torch.ones(L, L).tril().bool()
                if model.normalization == "rel_bias":
                    w = F.silu(s) * causal / (MAX_LEN + OUT_LEN)  # n: the padded length
                else:
                    w = torch.softmax((s / math.sqrt(dqk)).masked_fill(~causal, -math.inf), -1)
                heads.append(w @ vh)
            a = F.layer_norm(torch.cat(heads, -1), (H * dv,), eps=1e-6)
            x = x + block.o(u * a)
        out[b, :L] = F.normalize(x, dim=-1, eps=1e-6)
    return out


@pytest.mark.parametrize("normalization", ["rel_bias", "softmax_rel_bias"])
@pytest.mark.parametrize("group_size", [16, 2])
def test_grouped_path_equals_dense_per_user_reference(normalization, group_size):
    """Outputs and every parameter's gradient, in training mode (the fused SiLU attention with
    the mask in the bias index, for "rel_bias"), with one or several attention groups."""
    torch.manual_seed(0)
    model = build_hstu(normalization, attention_group_size=group_size).train()
    lengths, ids, payloads = random_batch([7, 0, 4, 9, 2], width=9, seed=5)
    upstream = torch.randn(5, 9, 8, generator=torch.Generator().manual_seed(6))
    results = []
    for fn in (run, dense_reference):
        model.zero_grad()
        out = fn(model, lengths, ids, payloads)
        (out * upstream).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out.detach(), grads))
    (got, got_grads), (want, want_grads) = results
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert got_grads.keys() == want_grads.keys()
    for name in want_grads:
        torch.testing.assert_close(got_grads[name], want_grads[name], rtol=1e-4, atol=1e-5)


def test_gradients_flow_to_every_hstu_parameter():
    torch.manual_seed(0)
    model = build_hstu().train()
    lengths, ids, payloads = random_batch([7, 3], width=8)
    run(model, lengths, ids, payloads).pow(2).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("normalization", ["rel_bias", "softmax_rel_bias"])
def test_incremental_encoding_equals_full_encoding(normalization):
    torch.manual_seed(0)
    model = build_hstu(normalization).eval()
    final = [9, 5, 0, 6]
    steps = [[4, 5, 0, 0], [3, 0, 0, 6], [2, 0, 0, 0]]  # new events per user per call
    lengths, ids, payloads = random_batch(final, width=10, seed=4)
    ts = payloads["timestamps"]  # ts[b, final[b]] is the query time
    with torch.no_grad():
        want = model.encode(lengths, ids, model.get_item_embeddings(ids), payloads)
        cache = model.init_cache(len(final))
        done = torch.zeros(len(final), dtype=torch.int64)
        for step in steps:
            new = torch.tensor(step)
            K = int(new.max()) + 1
            cols = (done.unsqueeze(1) + torch.arange(K)).clamp(max=ids.shape[1] - 1)
            new_ids = ids.gather(1, cols) * (torch.arange(K) < new.unsqueeze(1))
            new_ts = ts.gather(1, cols)  # index new[b] holds the next event's time
            state, cache = model.encode_incremental(
                cache, new, new_ids, model.get_item_embeddings(new_ids), {"timestamps": new_ts}
            )
            done = done + new
        assert torch.equal(cache.lengths, lengths)
    torch.testing.assert_close(state, want, rtol=1e-4, atol=1e-5)
    assert torch.count_nonzero(state[2]) == 0


def test_time_buckets_on_hand_computed_gaps():
    gaps = torch.tensor([0, 1, -1, 2, 60, 3600, -86400, 2**62])
    # floor(ln(max(|dt|,1)) / 0.301): ln 2 = 0.693 -> 2; ln 60 = 4.094 -> 13;
    # ln 3600 = 8.189 -> 27; ln 86400 = 11.367 -> 37; ln 2^62 = 42.98 -> 142 -> clamped to 128.
    assert bucketize_time_gaps(gaps).tolist() == [0, 0, 0, 2, 13, 27, 37, 128]


def test_relative_bias_uses_next_time_and_relative_position():
    ts = torch.tensor([[100, 160, 3760]])
    assert next_timestamps(ts).tolist() == [[160, 3760, 3760]]
    pos = torch.arange(3).unsqueeze(0)
    position_index, bucket = relative_bias_indices(pos, pos, 5, next_timestamps(ts), ts)
    # query 0 (next time 160) vs key 0: gap 60 -> 13; query 1 (next 3760) vs key 0: 3660 -> 27.
    assert bucket[0, 0, 0] == 13 and bucket[0, 1, 0] == 27 and bucket[0, 2, 2] == 0
    assert position_index[0, 1, 0] == 5 - 1 - 1 and position_index[0, 0, 2] == 5 - 1 + 2
    module = RelativeBucketedTimeAndPositionBias(max_positions=5)
    bias = module(position_index, bucket)
    torch.testing.assert_close(bias[0, 1, 0], module.ts_w[27] + module.pos_w[3])
    assert module.pos_w.numel() == 9 and module.ts_w.numel() == 129


def test_bf16_encoder_trains_and_matches_fp32_within_bf16_precision():
    """``train_fn.main_module_bf16`` casts the encoder: the fused attention's mask bias must stay
    exact in bf16 (no leak, no inf/NaN in values or gradients)."""
    torch.manual_seed(0)
    model = build_hstu(attention_group_size=2).train()
    lengths, ids, payloads = random_batch([7, 0, 4, 9, 2], width=9, seed=5)
    want = run(model, lengths, ids, payloads).detach()
    model = model.to(torch.bfloat16)
    got = run(model, lengths, ids, payloads)
    got.float().pow(2).sum().backward()
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=2e-2, rtol=2e-2)
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad.float()).all(), name

"""The masked (BERT4Rec-style) objective: masking, bidirectional encoders, the query with a mask
token, and its settings through the real config path."""

from __future__ import annotations

import pytest
import torch

from generative_recommenders.data.batch import SequenceBatch
from generative_recommenders.modeling.encoders.base import MASK_ID
from generative_recommenders.modeling.losses import SampledSoftmaxLoss, get_weighted_loss
from generative_recommenders.modeling.negatives import LocalNegativesSampler
from generative_recommenders.training.inputs import encode_queries, encoder_inputs
from generative_recommenders.training.masked import MaskedModel, draw_mask
from tests.modeling.model_builders import NUM_ITEMS, build_hstu, build_sasrec

BUILDERS = {"SASRec": build_sasrec, "HSTU": build_hstu}


def _batch(lengths: list[int], width: int = 10, seed: int = 0) -> SequenceBatch:
    g = torch.Generator().manual_seed(seed)
    B = len(lengths)
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    valid = torch.arange(width).unsqueeze(0) < lengths_t.unsqueeze(1)
    ids = torch.randint(1, NUM_ITEMS + 1, (B, width), generator=g) * valid
    times = 1_600_000_000 + torch.cumsum(torch.randint(1, 90_000, (B, width + 1), generator=g), 1)
    return SequenceBatch(
        rows=torch.arange(B),
        user_ids=torch.arange(1, B + 1),
        ids=ids,
        lengths=lengths_t,
        timestamps=times[:, :width] * valid,
        ratings=valid.float() * 4,
        target_ids=torch.randint(1, NUM_ITEMS + 1, (B,), generator=g),
        target_timestamps=times.gather(1, lengths_t.view(-1, 1)).squeeze(1),
        target_ratings=torch.full((B,), 5.0),
    )


def _masked_model(name: str, mask_prob: float = 0.3) -> MaskedModel:
    torch.manual_seed(0)
    encoder = BUILDERS[name](causal=False).eval()
    sampler = LocalNegativesSampler(
        encoder.get_item_embeddings, torch.arange(1, NUM_ITEMS + 1), True, 1e-6
    )
    return MaskedModel(
        encoder, sampler, SampledSoftmaxLoss(8), get_weighted_loss, {}, mask_prob=mask_prob
    )


def test_draw_mask_masks_only_real_positions_and_at_least_one_per_row() -> None:
    ids = torch.zeros(400, 12, dtype=torch.int64)
    lengths = torch.randint(1, 13, (400,), generator=torch.Generator().manual_seed(1))
    ids[torch.arange(12).unsqueeze(0) < lengths.unsqueeze(1)] = 7
    masked = draw_mask(ids, 0.2, torch.Generator().manual_seed(2))
    assert not bool((masked & (ids == 0)).any())  # padding is never masked
    assert bool((masked.sum(1) >= 1).all())  # every row supervises a position
    # Rows long enough to rarely need the forced one are masked at about the rate p.
    long_rows = lengths >= 10
    rate = masked[long_rows].sum() / (ids[long_rows] != 0).sum()
    assert 0.17 < float(rate) < 0.25


def test_the_forced_position_is_uniform_over_a_rows_real_positions() -> None:
    ids = torch.zeros(6000, 8, dtype=torch.int64)
    ids[:, :4] = 3  # four real positions, p tiny: almost every row gets the forced one
    masked = draw_mask(ids, 1e-6, torch.Generator().manual_seed(3))
    per_position = masked.sum(0).float()
    assert per_position[4:].sum() == 0
    assert torch.allclose(
        per_position[:4] / per_position[:4].sum(), torch.full((4,), 0.25), atol=0.03
    )


@pytest.mark.parametrize("name", ["SASRec", "HSTU"])
def test_a_masked_position_never_sees_its_own_item(name) -> None:
    model = _masked_model(name)
    batch = _batch([6, 9, 3])
    inputs = encoder_inputs(batch, write_target_id=True)
    masked = torch.zeros_like(inputs.ids, dtype=torch.bool)
    masked[0, 2] = masked[1, 9] = masked[2, 0] = True  # row 1's target (index 9) too
    outputs, _ = model.encode_masked(inputs, masked)
    changed = encoder_inputs(batch, write_target_id=True)
    changed.ids = torch.where(masked, (inputs.ids % NUM_ITEMS) + 1, inputs.ids)  # other items
    changed.ratings = torch.where(masked, 1.0, inputs.ratings)
    assert bool((changed.ids != inputs.ids)[masked].all())
    outputs_changed, _ = model.encode_masked(changed, masked)
    assert torch.equal(outputs, outputs_changed)  # no position saw the hidden items
    # ... while an unmasked item does reach the other positions (the encoder is bidirectional).
    visible = encoder_inputs(batch, write_target_id=True)
    visible.ids = visible.ids.clone()
    visible.ids[0, 4] = visible.ids[0, 4] % NUM_ITEMS + 1
    outputs_visible, _ = model.encode_masked(visible, masked)
    assert not torch.allclose(outputs_visible[0, 0], outputs[0, 0])  # position 0 sees position 4
    assert torch.equal(outputs_visible[1:], outputs[1:])  # other users are untouched


@pytest.mark.parametrize("name", ["SASRec", "HSTU"])
def test_the_loss_supervises_exactly_the_masked_positions(name) -> None:
    model = _masked_model(name)
    inputs = encoder_inputs(_batch([5, 8, 2]), write_target_id=True)
    captured = {}

    def keep_outputs(module, args, output):  # noqa: ANN001 (hook signature)
        output.retain_grad()
        captured["outputs"] = output

    model.encoder.register_forward_hook(keep_outputs)
    torch.manual_seed(5)
    loss, main, _ = model(inputs)
    torch.manual_seed(5)
    masked = draw_mask(inputs.ids, model.mask_prob)  # the same draw as inside forward
    assert torch.isfinite(loss) and loss.item() == main.item()
    loss.backward()
    per_position = captured["outputs"].grad.abs().sum(-1)  # [B, N + 1]
    assert bool((per_position[masked] > 0).all())  # every masked position is supervised
    assert float(per_position[~masked].sum()) == 0.0  # and no other
    assert model.encoder.mask_embedding.grad.abs().sum() > 0  # the mask token is learned


@pytest.mark.parametrize("name", ["SASRec", "HSTU"])
def test_queries_use_an_appended_mask_token_and_ignore_batchmates(name) -> None:
    model = _masked_model(name)
    encoder = model.encoder
    batch = _batch([3, 10, 7, 1], width=10)
    with torch.no_grad():
        queries = encode_queries(encoder, batch)
        traced_path = encode_queries(encoder, batch, traceable=True)
        # By hand: history, then the mask token at index length, the state there.
        inputs = encoder_inputs(batch, write_target_id=False)
        at_length = torch.arange(11).unsqueeze(0) == batch.lengths.view(-1, 1)
        ids = inputs.ids.masked_fill(at_length, MASK_ID)
        embeddings = torch.where(
            at_length.unsqueeze(-1),
            encoder.mask_embedding,
            encoder.get_item_embeddings(inputs.ids),
        )
        ts = inputs.timestamps.clone()
        for b, n in enumerate(batch.lengths.tolist()):
            ts[b, n + 1 :] = ts[b, n]
        states = encoder(
            batch.lengths + 1, ids, embeddings, {"timestamps": ts, "ratings": inputs.ratings}
        )
        by_hand = states[torch.arange(4), batch.lengths]
        alone = encode_queries(encoder, _one(batch, 0))
    assert torch.allclose(queries, by_hand, atol=1e-6)
    assert torch.allclose(traced_path, queries, atol=1e-5)  # the export's full-width path agrees
    assert torch.allclose(alone[0], queries[0], atol=1e-6)  # padding/batchmates do not matter


def _one(batch: SequenceBatch, row: int) -> SequenceBatch:
    width = int(batch.lengths[row])
    return SequenceBatch(
        **{
            name: (value[row : row + 1, :width] if value.dim() == 2 else value[row : row + 1])
            for name, value in batch.__dict__.items()
        }
    )


def test_mask_prob_outside_the_open_interval_is_refused() -> None:
    encoder = build_sasrec(causal=False)
    sampler = LocalNegativesSampler(encoder.get_item_embeddings, torch.arange(1, 5), False, 1e-6)
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(
            ValueError, match=r"masked.mask_prob=.*expected a probability in \(0, 1\)"
        ):
            MaskedModel(encoder, sampler, SampledSoftmaxLoss(), get_weighted_loss, {}, mask_prob=p)


def test_a_causal_encoder_is_refused_by_the_masked_objective() -> None:
    encoder = build_sasrec()
    sampler = LocalNegativesSampler(encoder.get_item_embeddings, torch.arange(1, 5), False, 1e-6)
    with pytest.raises(ValueError, match="causal=False"):
        MaskedModel(encoder, sampler, SampledSoftmaxLoss(), get_weighted_loss, {})

"""Fixed negative draws and a per-position reference loop for the sampled-loss tests."""

from __future__ import annotations

from collections.abc import Callable

import torch

from generative_recommenders.modeling.negatives import InBatchNegativesSampler

B, N, D = 2, 4, 3
# Supervision ids: row 0 has 3 supervised positions, row 1 has 2 (then padding).
IDS = torch.tensor([[4, 7, 4, 0], [9, 7, 0, 0]], dtype=torch.int64)
WEIGHTS = torch.tensor([[1.0, 0.5, 2.0, 0.0], [1.0, 1.5, 0.0, 0.0]], dtype=torch.float64)
# In-batch candidates are [4, 7, 9] (slots 0, 1, 2). Position 0 (positive 4) draws 4 twice (two
# accidental hits); position 4 (positive 7) draws only 7: all its negatives are hits.
CANDIDATE_IDS = torch.tensor([4, 7, 9])
SLOTS = torch.tensor([[0, 1, 0], [2, 2, 0], [1, 2, 2], [0, 1, 1], [1, 1, 1]])


class FixedSlotsSampler(InBatchNegativesSampler):
    """In-batch sampler whose draws are given by the test (the loss, not the RNG, is under test)."""

    def __init__(self, slots: torch.Tensor, l2_norm: bool) -> None:
        super().__init__(l2_norm=l2_norm, l2_norm_eps=1e-6)
        self._slots = slots

    def draw_slots(self, num_positions, num_to_sample, device, generator=None):  # noqa: ANN001, ANN201
        assert self._slots.shape == (num_positions, num_to_sample)
        return self._slots


def leaves(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(item table [10, D], encoder outputs [B, N, D]), float64 leaves requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(10, D, generator=gen, dtype=torch.float64).requires_grad_(True)
    outputs = torch.randn(B, N, D, generator=gen, dtype=torch.float64).requires_grad_(True)
    return table, outputs


def normalise(x: torch.Tensor, on: bool) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp(min=1e-6) if on else x


def run_loss(loss_module, slots, table, outputs, similarity, l2, users=None):  # noqa: ANN001, ANN201
    """The loss module on IDS / WEIGHTS with the given draws (in-batch candidates = IDS)."""
    sampler = FixedSlotsSampler(slots, l2)
    flat = IDS.view(-1)
    sampler.process_batch(flat, flat != 0, table[flat])
    return loss_module(
        lengths=(IDS != 0).sum(1),
        output_embeddings=outputs,
        supervision_ids=IDS,
        supervision_embeddings=table[IDS],
        supervision_weights=WEIGHTS,
        negatives_sampler=sampler,
        similarity_module=similarity,
        user_ids=users,
    )


def reference_loss(
    per_position: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    slots, table, outputs, similarity, temperature, l2, users=None,
) -> torch.Tensor:  # fmt: skip
    """Weighted mean of ``per_position(s+ [], kept negatives' logits [k])`` (logits / T)."""
    numerator, denominator, row = 0.0, 0.0, 0
    for b in range(B):
        for t in range(N):
            if WEIGHTS[b, t] <= 0:
                continue
            positive_id = int(IDS[b, t])
            kept = [int(CANDIDATE_IDS[s]) for s in slots[row]]
            kept = [i for i in kept if i != positive_id]
            items = torch.stack([normalise(table[i], l2) for i in [positive_id, *kept]])
            uid = None if users is None else users[b : b + 1]
            logits = similarity(outputs[b, t].unsqueeze(0), items.unsqueeze(0), uid)[0][0]
            logits = logits / temperature
            numerator = numerator + WEIGHTS[b, t] * per_position(logits[0], logits[1:])
            denominator += float(WEIGHTS[b, t])
            row += 1
    return numerator / denominator


def assert_same_values_and_gradients(got, want, inputs) -> None:  # noqa: ANN001
    got_grads = torch.autograd.grad(got, inputs)
    want_grads = torch.autograd.grad(want, inputs)
    torch.testing.assert_close(got, want)
    for a, b in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert any(float(g.abs().sum()) > 0 for g in got_grads)

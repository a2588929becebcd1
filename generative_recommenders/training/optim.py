"""AdamW with the paper's betas and a linear learning-rate warmup."""

from __future__ import annotations

import torch
from torch import nn


def make_optimizer(
    model: nn.Module, learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW(betas=(0.9, 0.98)) over every trainable parameter."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        parameters, lr=learning_rate, betas=(0.9, 0.98), weight_decay=weight_decay
    )


def make_warmup_scheduler(
    optimizer: torch.optim.Optimizer, num_warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Scale the learning rate by min(1, (step + 1) / num_warmup_steps); constant after warmup."""

    def factor(step: int) -> float:
        if num_warmup_steps <= 0:
            return 1.0
        return min(1.0, (step + 1) / num_warmup_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

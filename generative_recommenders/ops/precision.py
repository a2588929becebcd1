"""Mixed precision per device: where a module's bf16 setting takes effect."""

from __future__ import annotations

import contextlib

import torch


def bf16_autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when ``enabled``; a no-op on other devices (on CPU it would
    only add casts: measured slower, see docs/benchmarks.md on main_module_bf16)."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()

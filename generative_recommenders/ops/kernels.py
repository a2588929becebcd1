"""Which implementation each ``ops`` function runs: its reference formula or a registered backend.

Every hot spot (HSTU attention, softmax attention, the sampled-softmax losses, dropout, the jagged
and length-group conversions) is one function in ``ops/`` that looks up its implementation here
on each call, by the device of its inputs. An op has exactly one **reference** (the formula,
written to be read next to the paper; every backend must equal it, see
``tests/ops/test_backends.py``) and any number of **backends**, each registered with the device
types it is tested on. Backends registered today:

- ``fused``: the project's CPU paths (fused autograd functions, chunked sampled softmax, the
  16-bit dropout mask multiply, ...). CPU only: tested on CPU, not on a GPU.
- ``fbgemm``: fbgemm_gpu's jagged operators (CPU), where they beat the reference.
- ``chunked``: the full-catalogue softmax in blocks with recomputation in backward (plain torch,
  registered for CPU and CUDA; tested on CPU only).

The choice is made once per run with :func:`use` (the ``train_fn.kernels`` binding):

- ``"auto"`` (default): for each op, the first backend registered for the inputs' device type
  with ``auto=True`` (the fastest measured one), else the reference;
- ``"reference"``: every op runs its reference;
- a backend name: that backend for the ops that have it on the device, ``"auto"`` for the rest.

A GPU kernel (Triton, FlexAttention, a ``torch.compile``d function) plugs in by registering it in
the op's module, e.g. ``register("hstu_attention", "triton", impl, devices=("cuda",))``, with the
same signature as the reference, and by adding it to the shared backend test; nothing under
``modeling/`` changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from generative_recommenders.errors import UserInputError

AUTO = "auto"
REFERENCE = "reference"
# The modules that define ops (and register their backends) when imported.
OP_MODULES = (
    "generative_recommenders.ops.dropout",
    "generative_recommenders.ops.groups",
    "generative_recommenders.ops.jagged",
    "generative_recommenders.ops.attention",
    "generative_recommenders.ops.hstu_attention",
    "generative_recommenders.ops.sampled_softmax",
    "generative_recommenders.ops.full_softmax",
)


class UnknownKernelsError(UserInputError, ValueError):
    """``train_fn.kernels`` names no backend (both a user-input error and a ValueError)."""


@dataclass(frozen=True)
class Backend:
    """One registered implementation of an op: tested on ``devices``; ``auto`` when "auto" may
    pick it (registration order is the preference order)."""

    name: str
    impl: Any
    devices: frozenset[str]
    auto: bool


_REFERENCES: dict[str, Any] = {}
_BACKENDS: dict[str, dict[str, Backend]] = {}
_choice = AUTO


def define(op: str, reference: Any) -> None:
    """Declare ``op`` with its reference implementation (once, in the op's module)."""
    if op in _REFERENCES:
        raise ValueError(f"op {op!r} is already defined")
    _REFERENCES[op] = reference
    _BACKENDS[op] = {}


def register(
    op: str, name: str, impl: Any, devices: tuple[str, ...] = ("cpu",), auto: bool = True
) -> None:
    """Register ``impl`` as backend ``name`` of ``op`` for the given device types."""
    if op not in _REFERENCES:
        raise ValueError(f"register: op {op!r} is not defined")
    if name in (AUTO, REFERENCE) or name in _BACKENDS[op]:
        raise ValueError(f"register: backend name {name!r} is taken for {op!r}")
    _BACKENDS[op][name] = Backend(name, impl, frozenset(devices), bool(auto))


def _load_all() -> None:
    for module in OP_MODULES:
        importlib.import_module(module)


def choices() -> tuple[str, ...]:
    """Every accepted value of ``train_fn.kernels``: auto, reference, then the backend names."""
    _load_all()
    names = {backend for per_op in _BACKENDS.values() for backend in per_op}
    return (AUTO, REFERENCE, *sorted(names))


def check(choice: str, binding: str = "train_fn.kernels") -> str:
    """``choice`` when it is accepted, else :class:`UnknownKernelsError` (one line, the choices)."""
    accepted = choices()
    if choice not in accepted:
        raise UnknownKernelsError(f"{binding}={choice!r} is not one of: {', '.join(accepted)}")
    return choice


def use(choice: str) -> None:
    """Select the implementations for this process (see the module doc)."""
    global _choice
    _choice = check(choice)


def current() -> str:
    """The selected value (``"auto"`` unless :func:`use` said otherwise)."""
    return _choice


@contextmanager
def using(choice: str) -> Iterator[None]:
    """Inside the block, ``choice`` is selected (e.g. "reference" while tracing for export)."""
    global _choice
    saved = _choice
    use(choice)
    try:
        yield
    finally:
        _choice = saved


def reference(op: str) -> Any:
    """The reference implementation of ``op``."""
    return _REFERENCES[op]


def backends(op: str) -> dict[str, Backend]:
    """The registered backends of ``op`` by name (registration order)."""
    _load_all()
    return dict(_BACKENDS[op])


def resolve(op: str, device: torch.device | str) -> Any:
    """The implementation of ``op`` that runs for inputs on ``device`` under the current choice."""
    device_type = torch.device(device).type
    per_op = _BACKENDS[op]
    if _choice == REFERENCE:
        return _REFERENCES[op]
    named = per_op.get(_choice)
    if named is not None and device_type in named.devices:
        return named.impl
    for backend in per_op.values():
        if backend.auto and device_type in backend.devices:
            return backend.impl
    return _REFERENCES[op]


def resolve_name(op: str, device: torch.device | str) -> str:
    """The name of what :func:`resolve` returns ("reference" or a backend name)."""
    impl = resolve(op, device)
    for backend in _BACKENDS[op].values():
        if backend.impl is impl:
            return backend.name
    return REFERENCE

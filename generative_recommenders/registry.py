"""Components by name: every objective, loss, encoder, sampler, similarity, metric and data source
registers here.

A leaf module (no torch, no gin), so every layer may use it: a component's own file says

    @LOSSES.register("SampledSoftmaxLoss")
    class SampledSoftmaxLoss(nn.Module): ...

and ``train_fn.loss_module = "SampledSoftmaxLoss"`` selects it. A file outside the package joins
the same way once it is imported (a gin ``import my_module`` line does that). ``config/`` turns
each registered class into a gin configurable as it registers (see :meth:`Registry.on_register`),
so its constructor's parameters are its settings, declared once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from generative_recommenders.errors import UserInputError

T = TypeVar("T")


class UnknownChoiceError(UserInputError, ValueError):
    """A name outside its accepted set (both a user-input error and a ValueError)."""


@dataclass(frozen=True)
class Entry:
    """One registered component: its name, the class or function, and free-form facts."""

    kind: str
    name: str
    target: Any
    gin_name: str
    info: dict[str, Any] = field(default_factory=dict)


class Registry:
    """Name -> component for one kind; ``binding`` is the setting that selects it (for errors).

    Args:
        kind: "loss", "encoder", ... (used in messages and as the gin module of its entries).
        binding: the user-facing setting that names an entry, e.g. ``train_fn.loss_module``.
    """

    def __init__(self, kind: str, binding: str) -> None:
        self.kind = kind
        self.binding = binding
        self._entries: dict[str, Entry] = {}
        self._listeners: list[Callable[[Entry], None]] = []

    def register(
        self, name: str | None = None, *, gin_name: str | None = None, **info: Any
    ) -> Callable[[T], T]:
        """Decorator: register the class or function under ``name`` (default: its ``__name__``).

        ``gin_name`` is the name its parameters are bound under in gin files (default: the
        class name); ``info`` holds facts other code may read (e.g. ``public=True`` for sources).
        Registering another object under a taken name is refused (two files would fight over it);
        the same object again (a module imported twice) is a no-op.
        """

        def decorate(target: T) -> T:
            key = name or target.__name__
            current = self._entries.get(key)
            if current is not None:
                if _same(current.target, target):
                    return target
                raise ValueError(
                    f"{self.kind} {key!r} is registered twice: {_where(current.target)} and "
                    f"{_where(target)}"
                )
            entry = Entry(self.kind, key, target, gin_name or target.__name__, dict(info))
            self._entries[key] = entry
            for listener in self._listeners:
                listener(entry)
            return target

        return decorate

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests, or a notebook that redefines a component)."""
        self._entries.pop(name, None)

    def on_register(self, listener: Callable[[Entry], None]) -> None:
        """Call ``listener`` for every entry, now and whenever one registers later."""
        self._listeners.append(listener)
        for entry in list(self._entries.values()):
            listener(entry)

    def entry(self, name: str) -> Entry:
        """The entry called ``name``; UnknownChoiceError listing the registered names."""
        if name not in self._entries:
            raise UnknownChoiceError(
                f"{self.binding}={name!r} is not one of: {', '.join(self._entries)} "
                f"(to add a {self.kind}, see docs/extending.md)"
            )
        return self._entries[name]

    def get(self, name: str) -> Any:
        return self.entry(name).target

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._entries


def _same(a: object, b: object) -> bool:
    # A module re-executed (e.g. imported under two names) makes a new but equal class.
    return a is b or (
        getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
        and getattr(a, "__module__", None) == getattr(b, "__module__", None)
    )


def _where(target: object) -> str:
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', target)}"


LOSSES = Registry("loss", "train_fn.loss_module")
ENCODERS = Registry("encoder", "train_fn.main_module")
SAMPLERS = Registry("sampler", "train_fn.sampling_strategy")
SIMILARITIES = Registry("similarity", "train_fn.interaction_module_type")
OBJECTIVES = Registry("objective", "train_fn.objective")
METRICS = Registry("metric", "train_fn.metrics")
SOURCES = Registry("source", "--dataset")

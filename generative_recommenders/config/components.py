"""Registered components as gin configurables, built from the run's settings by name.

Every class registered in :mod:`generative_recommenders.registry` (loss, encoder, sampler,
similarity) becomes a gin configurable as it registers, under its ``gin_name`` (the class name, or
the paper's name: ``hstu_encoder``, ``sasrec_encoder``, ``create_mol_interaction_module``), so its
constructor's parameters are its settings, declared once, next to its code.

:func:`build` makes one: the builder *offers* the run's values for the parameters of a component
of that kind (e.g. a loss may take ``num_to_sample`` = ``train_fn.num_negatives``); a constructor
receives those it names, gin supplies its other bound parameters, and its defaults the rest. What
is refused, in one line naming both sides:

- an explicit ``train_fn`` binding no built component takes (:func:`check_all_used`);
- an explicit ``train_fn`` binding that differs from a value the component fixes
  (``@LOSSES.register("BCELoss", fixed={"temperature": 1.0})``);
- the same parameter bound both through ``train_fn`` and under the component's own name;
- bindings of a registered component that the run does not select (:func:`check_unselected`),
  e.g. ``create_mol_interaction_module.*`` with ``train_fn.interaction_module_type = "DotProduct"``;
- a constructor's own ``ValueError`` / ``TypeError``, prefixed with the binding that chose it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gin

from generative_recommenders.errors import UserInputError
from generative_recommenders.registry import (
    ENCODERS,
    LOSSES,
    OBJECTIVES,
    SAMPLERS,
    SIMILARITIES,
    Entry,
    Registry,
)

CONFIGURABLE_REGISTRIES: tuple[Registry, ...] = (
    OBJECTIVES,
    LOSSES,
    ENCODERS,
    SAMPLERS,
    SIMILARITIES,
)
_CONFIGURABLES: dict[tuple[str, str], Callable[..., Any]] = {}


@dataclass(frozen=True)
class Offer:
    """A run value offered to a constructor parameter, with the binding it comes from.

    ``explicit``: the user bound it (a default that no component takes is no contradiction).
    """

    binding: str
    value: Any
    explicit: bool = True


def _make_configurable(entry: Entry) -> None:
    key = (entry.kind, entry.name)
    if key in _CONFIGURABLES:
        return
    target = entry.target

    def factory(*args: Any, **kwargs: Any) -> Any:
        return target(*args, **kwargs)

    # gin reads the parameter names (and checks bindings against them) from this signature.
    factory.__signature__ = inspect.signature(target)  # type: ignore[attr-defined]
    factory.__name__ = factory.__qualname__ = entry.gin_name
    factory.__doc__ = target.__doc__
    factory.__module__ = getattr(target, "__module__", __name__)
    _CONFIGURABLES[key] = gin.external_configurable(factory, name=entry.gin_name, module=entry.kind)


for _registry in CONFIGURABLE_REGISTRIES:
    _registry.on_register(_make_configurable)


def configurable(registry: Registry, name: str) -> Callable[..., Any]:
    """The gin-configured constructor of a registered component."""
    entry = registry.entry(name)
    _make_configurable(entry)
    return _CONFIGURABLES[(entry.kind, entry.name)]


def _bound_parameters(entry: Entry) -> dict[str, Any]:
    return dict(gin.get_bindings(configurable_name(entry), resolve_references=False))


def configurable_name(entry: Entry) -> str:
    return f"{entry.kind}.{entry.gin_name}"


def build(registry: Registry, name: str, offers: dict[str, Offer], used: set[str]) -> Any:
    """Construct the component ``name`` of ``registry`` (see the module docstring).

    Args:
        offers: constructor parameter name -> the run's value for it.
        used: collects the bindings a constructor took (for :func:`check_all_used`).

    Raises:
        UserInputError: one line naming the selecting binding and the bindings involved.
    """
    entry = registry.entry(name)
    selected = f"{registry.binding}={name!r}"
    parameters = inspect.signature(entry.target).parameters
    fixed = entry.info.get("fixed", {})
    bound = _bound_parameters(entry)
    kwargs: dict[str, Any] = {}
    for parameter, offer in offers.items():
        if parameter in fixed:
            if offer.explicit and offer.value is not None and offer.value != fixed[parameter]:
                raise UserInputError(
                    f"{offer.binding}={offer.value!r} contradicts {selected}, which uses "
                    f"{parameter}={fixed[parameter]!r}; remove the binding"
                )
            if parameter in bound and bound[parameter] != fixed[parameter]:
                raise UserInputError(
                    f"{entry.gin_name}.{parameter}={bound[parameter]!r} contradicts {selected}, "
                    f"which uses {parameter}={fixed[parameter]!r}; remove the binding"
                )
            used.add(offer.binding)
            if parameter in parameters:
                kwargs[parameter] = fixed[parameter]
            continue
        # Only parameters a constructor names take offers (nn.Module's own ``**kwargs`` does not).
        if offer.value is None or parameter not in parameters:
            continue
        if parameter in bound:
            if offer.explicit:
                raise UserInputError(
                    f"{offer.binding}={offer.value!r} and {entry.gin_name}.{parameter}="
                    f"{bound[parameter]!r} both set {name}'s {parameter}; keep one"
                )
            continue  # the component's own binding wins over a default of train_fn
        kwargs[parameter] = offer.value
        used.add(offer.binding)
    try:
        return configurable(registry, name)(**kwargs)
    except (ValueError, TypeError) as error:
        explicit = [
            f"{offers[p].binding}={v!r}"
            for p, v in kwargs.items()
            if p in offers and offers[p].explicit
        ]
        context = ", ".join([selected, *explicit])
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(f"{context}: {first}") from error


def check_all_used(offers: Iterable[Offer], used: set[str], choices: str) -> None:
    """Refuse an explicit binding that no built component took (it would be silently ignored)."""
    for offer in offers:
        if offer.explicit and offer.value is not None and offer.binding not in used:
            raise UserInputError(
                f"{offer.binding}={offer.value!r} is used by none of the chosen components "
                f"({choices}); remove it or choose a component that takes it"
            )


def check_unselected(registry: Registry, selected: str) -> None:
    """Refuse bindings of a component of ``registry`` that the run does not select."""
    for entry in registry.entries():
        if entry.name == selected:
            continue
        _make_configurable(entry)
        bound = _bound_parameters(entry)
        if bound:
            parameter, value = next(iter(bound.items()))
            raise UserInputError(
                f"{entry.gin_name}.{parameter}={value!r} configures {registry.kind} "
                f"{entry.name!r}, but {registry.binding}={selected!r}; remove the "
                f"{entry.gin_name}.* bindings or select {entry.name!r}"
            )

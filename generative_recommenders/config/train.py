"""``train_fn``: the paper's gin binding surface, split over the sections that use each setting.

``train_fn`` takes any ``train_fn.<name>`` binding and hands it to the one settings section that
declares ``<name>`` (:data:`SECTIONS`): :class:`~.data.DataSettings` (stores and loaders),
:class:`~.modeling.ModelSettings` (the encoder), :class:`~.objective.ObjectiveSettings` (loss and
negatives), :class:`~.evaluation.EvaluationSettings` (retrieval and metrics) and
:class:`~generative_recommenders.training.trainer.Schedule` (the trainer's loop). Each section is a
frozen dataclass next to the code that reads it; its fields are the binding names and defaults (the
paper's, so its gin files run unchanged) and its ``__post_init__`` validates them. A new setting is
one field in the section whose code uses it; nothing here changes.

A name no section declares is refused in one line (with the closest names).
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

import gin

from generative_recommenders.config.data import DataSettings
from generative_recommenders.config.evaluation import EvaluationSettings
from generative_recommenders.config.modeling import ModelSettings
from generative_recommenders.config.objective import ObjectiveSettings
from generative_recommenders.errors import UserInputError
from generative_recommenders.training.trainer import Schedule

SECTIONS: dict[str, type] = {
    "data": DataSettings,
    "model": ModelSettings,
    "objective": ObjectiveSettings,
    "evaluation": EvaluationSettings,
    "schedule": Schedule,
}


def _owners() -> dict[str, str]:
    """Binding name -> the section declaring it (a name in two sections is a programming error)."""
    owners: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in owners:
                raise RuntimeError(
                    f"train_fn.{f.name} is declared by both {owners[f.name]} and {section}"
                )
            owners[f.name] = section
    return owners


@dataclass(frozen=True)
class TrainConfig:
    """The validated settings of one run: one object per section, plus which names were bound.

    ``config.<name>`` reads any setting from its section (``config.learning_rate`` is
    ``config.schedule.learning_rate``), so callers need not know where a name lives.
    """

    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    schedule: Schedule = field(default_factory=Schedule)
    explicit: frozenset[str] = frozenset()

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: forward to the section that declares ``name``.
        if name.startswith("_"):
            raise AttributeError(name)
        section = _owners().get(name)
        if section is None:
            raise AttributeError(f"TrainConfig has no setting {name!r}")
        return getattr(self.__dict__[section], name)

    @classmethod
    def from_bindings(cls, **bindings: Any) -> TrainConfig:
        """Sort ``train_fn`` bindings into their sections and validate them.

        Raises:
            ValueError: an unknown name, or a value its section refuses (the message names it).
        """
        owners = _owners()
        per_section: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for name, value in bindings.items():
            if name not in owners:
                close = difflib.get_close_matches(name, owners, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ValueError(f"train_fn.{name}: no such setting{hint}")
            per_section[owners[name]][name] = value
        sections = {name: SECTIONS[name](**values) for name, values in per_section.items()}
        return cls(**sections, explicit=frozenset(bindings))

    def with_bindings(self, **bindings: Any) -> TrainConfig:
        """A copy with more bindings applied (they count as explicit)."""
        return TrainConfig.from_bindings(**{**self.bound_values(), **bindings})

    def bound_values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.explicit}

    def to_dict(self) -> dict[str, Any]:
        """Every setting by its binding name (flat, as ``run.json`` has always stored them)."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            out.update(dataclasses.asdict(getattr(self, section)))
        return out


@gin.configurable("train_fn")
def _train_fn_bindings(**bindings: Any) -> dict[str, Any]:
    # gin's face of train_fn: takes any name (the sections decide), validates nothing, so a
    # refusal below is raised outside gin (which would append its own lines to the message).
    return bindings


def train_fn(**overrides: Any) -> TrainConfig:
    """Collect the ``train_fn.*`` bindings (and ``overrides``) into a validated TrainConfig.

    Raises:
        UserInputError: an unknown binding or a value outside its allowed set, in one line.
    """
    bindings = {**_train_fn_bindings(), **overrides}
    try:
        return TrainConfig.from_bindings(**bindings)
    except UserInputError:
        raise
    except (ValueError, TypeError) as error:
        raise InvalidBindingError(str(error).strip().splitlines()[0]) from error


class InvalidBindingError(UserInputError, ValueError):
    """A ``train_fn`` binding that is unknown or outside its allowed values (one line)."""


def unknown_names(names: Any) -> list[str]:
    """The names among ``names`` that no section declares."""
    owners = _owners()
    return [name for name in names if name not in owners]


def setting_names() -> list[str]:
    """Every ``train_fn`` name a section declares."""
    return list(_owners())


def bound_train_fn_names() -> list[str]:
    """The parameter names bound to ``train_fn`` in the current gin config."""
    return list(gin.get_bindings(_train_fn_bindings))

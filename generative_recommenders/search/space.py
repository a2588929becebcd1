"""A hyperparameter search space read from YAML: gin binding name → one distribution.

```yaml
train_fn.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
train_fn.dropout_rate: {uniform: [0.0, 0.5]}
train_fn.num_negatives: {choice: [32, 64, 128]}
hstu_encoder.num_blocks: {randint: [1, 4]}   # integers 1, 2, 3: the upper bound is excluded
```

Every binding and every value a distribution can produce at its ends (each choice, each bound) is
checked against the training configuration before any trial starts, so a typo or an impossible
value is one line naming the file and the binding, not a failed trial.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from generative_recommenders.errors import UserInputError

KINDS = ("choice", "uniform", "loguniform", "randint")


@dataclass(frozen=True)
class Distribution:
    """One binding's distribution: ``kind`` in :data:`KINDS`, ``args`` its choices or bounds."""

    binding: str
    kind: str
    args: tuple

    def probe_values(self) -> tuple:
        """Values at the distribution's ends: each choice, or both bounds (randint: high - 1)."""
        if self.kind == "choice":
            return self.args
        low, high = self.args
        return (low, high - 1) if self.kind == "randint" else (low, high)

    def describe(self) -> str:
        return f"{self.kind}{list(self.args)}"


def gin_literal(value: object) -> str:
    """A Python value as gin source: numbers, booleans, None and strings (quoted)."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(gin_literal(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a gin value")


def binding_line(binding: str, value: object) -> str:
    return f"{binding} = {gin_literal(value)}"


def load_search_space(path: str | Path) -> list[Distribution]:
    """Parse and check the YAML file's shape (not yet the bindings: see :func:`check_space`).

    Raises:
        UserInputError: a missing or malformed file, or a malformed distribution, naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: search space file not found")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise UserInputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from error
    if not isinstance(document, dict) or not document:
        raise UserInputError(
            f"{path}: expected a mapping of gin binding names to distributions, "
            "e.g. 'train_fn.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}'"
        )
    return [_distribution(path, str(name), spec) for name, spec in document.items()]


def _distribution(path: Path, binding: str, spec: object) -> Distribution:
    where = f"{path}: {binding}"
    if "." not in binding or binding.strip() != binding or " " in binding:
        raise UserInputError(f"{where}: expected a gin binding name such as train_fn.learning_rate")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UserInputError(f"{where}: expected one of {{{', '.join(KINDS)}: [...]}}")
    kind, args = next(iter(spec.items()))
    if kind not in KINDS:
        raise UserInputError(f"{where}: unknown distribution {kind!r}; expected one of {KINDS}")
    if not isinstance(args, list) or not args:
        raise UserInputError(f"{where}: {kind} takes a non-empty list, got {args!r}")
    if kind == "choice":
        return Distribution(binding, kind, tuple(_plain(where, value) for value in args))
    if len(args) != 2:
        raise UserInputError(f"{where}: {kind} takes [low, high], got {args!r}")
    low, high = (_number(where, kind, value) for value in args)
    if kind == "randint":
        if not all(float(v).is_integer() for v in (low, high)):
            raise UserInputError(f"{where}: randint bounds must be integers, got {args!r}")
        low, high = int(low), int(high)
    if not low < high:
        raise UserInputError(f"{where}: {kind} needs low < high, got {args!r}")
    if kind == "loguniform" and low <= 0:
        raise UserInputError(f"{where}: loguniform needs low > 0, got {args!r}")
    return Distribution(binding, kind, (low, high))


def _number(where: str, kind: str, value: object) -> float:
    # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as the number it obviously is.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserInputError(f"{where}: {kind} bounds must be finite numbers, got {value!r}")
    return value


def _plain(where: str, value: object) -> object:
    if isinstance(value, str):
        try:
            return float(value) if _looks_numeric(value) else value
        except ValueError:
            return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list) and all(isinstance(v, (bool, int, float, str)) for v in value):
        return tuple(value)
    raise UserInputError(f"{where}: choices must be numbers, booleans, strings or lists of them")


def _looks_numeric(text: str) -> bool:
    lowered = text.strip().lower()
    return bool(lowered) and lowered[0] in "0123456789.+-" and "e" in lowered


def check_space(
    distributions: Sequence[Distribution],
    config_files: Sequence[str],
    fixed_bindings: Sequence[str],
    source: str | Path,
) -> None:
    """Build the training configuration with each probe value of each binding.

    Raises:
        UserInputError: ``"<source>: <binding> = <value>: <what the configuration says>"``.
    """
    from generative_recommenders.config.build import validate_choices
    from generative_recommenders.config.run import RunOptions, load_config

    seen = set()
    for distribution in distributions:
        if distribution.binding in seen:
            raise UserInputError(f"{source}: {distribution.binding} appears twice")
        seen.add(distribution.binding)
        for value in distribution.probe_values():
            line = binding_line(distribution.binding, value)
            options = RunOptions(tuple(config_files), tuple(fixed_bindings) + (line,))
            try:
                validate_choices(load_config(options))
            except UserInputError as error:
                message = str(error).replace(f"--gin_bindings={line!r}: ", "")
                raise UserInputError(f"{source}: {line}: {message}") from error

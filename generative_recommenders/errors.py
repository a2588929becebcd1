"""The one exception type for bad user input.

Entry points (``main.py``, ``preprocess_public_data.py``, the recommend CLI) catch it, print its
message as a single line and exit with status 2; nothing else in the package prints or exits.
"""

from __future__ import annotations


class UserInputError(Exception):
    """Bad input from the user: a file, a field or a setting that is not what was expected.

    The message must be one line naming the file (or binding), the field and what was expected.
    """

    exit_code: int = 2


def check_choice(binding: str, value: object, choices: tuple) -> None:
    """ValueError "train_fn.x='v' is not one of: 'a', 'b'" unless ``value in choices``."""
    if value not in choices:
        raise ValueError(f"{binding}={value!r} is not one of: {', '.join(map(repr, choices))}")


def check_positive(binding: str, value: int) -> None:
    """ValueError "train_fn.x=0: expected a positive integer" unless ``value > 0``."""
    if value <= 0:
        raise ValueError(f"{binding}={value!r}: expected a positive integer")

"""Value checks shared by the configuration classes: each raises ``ValueError`` naming the option, the value and
the valid values.

Two message styles, chosen by ``owner``:
- ``owner="RNNSeq2SeqConfig"`` (a class name): ``RNNSeq2SeqConfig: `cell` must be one of ['gru', 'lstm'], got 'x'``;
- ``owner=None``: ``dropout=1.5 is invalid; valid values: a float in [0, 1)`` and, for choices,
  ``norm_style='x' is invalid; valid choices: 'post', 'pre'``. Training's command-line options use this style
  with ``option="--name"``, so a flag and a config value are checked by the same code.

Shipped to the Hub as custom code beside the configuration files: imports only the standard library.
"""

from __future__ import annotations

from typing import NoReturn

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_positive",
    "check_token_ids",
    "config_error",
]


def config_error(owner: str | None, option: str, value, expected: str) -> NoReturn:
    """Raise the ``ValueError`` for ``option=value``; ``expected`` says what is valid ("an integer >= 1")."""
    if owner is None:
        raise ValueError(f"{option}={value!r} is invalid; valid values: {expected}")
    raise ValueError(f"{owner}: `{option}` must be {expected}, got {value!r}")


def check_int(owner: str | None, option: str, value, minimum: int = 1) -> None:
    """An ``int`` (not a ``bool``) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        config_error(owner, option, value, f"an integer >= {minimum}")


def check_bool(owner: str | None, option: str, value) -> None:
    """``True`` or ``False`` (not 0 / 1 / a string)."""
    if not isinstance(value, bool):
        config_error(owner, option, value, "True or False")


def check_choice(owner: str | None, option: str, value, choices: tuple[str, ...]) -> None:
    """One of ``choices``."""
    if value in choices:
        return
    if owner is None:
        raise ValueError(f"{option}={value!r} is invalid; valid choices: {', '.join(map(repr, choices))}")
    config_error(owner, option, value, f"one of {list(choices)}")


def check_float(owner: str | None, option: str, value, low=0, high=1, high_inclusive: bool = False) -> None:
    """A number (not a ``bool``) in ``[low, high)`` (``[low, high]`` with ``high_inclusive``; ``>= low`` when
    ``high`` is None). The bounds are written into the message as given (``0`` vs ``0.0``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and value >= low
    if ok and high is not None:
        ok = value <= high if high_inclusive else value < high
    if ok:
        return
    if high is None:
        config_error(owner, option, value, f"a float >= {low}")
    config_error(owner, option, value, f"a float in [{low}, {high}{']' if high_inclusive else ')'}")


def check_positive(owner: str | None, option: str, value, allow_zero: bool = False) -> None:
    """A number (not a ``bool``) > 0, or >= 0 with ``allow_zero``; ``None`` (an option left unset) passes."""
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        config_error(owner, option, value, "a number >= 0" if allow_zero else "a number > 0")


def check_token_ids(owner: str, vocab_size: int, **token_ids) -> None:
    """Every special token id given as an ``int`` lies in ``[0, vocab_size)`` (``None`` is allowed)."""
    for option, value in token_ids.items():
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value < vocab_size:
            raise ValueError(f"{owner}: `{option}` must be in [0, vocab_size={vocab_size}), got {value}")
